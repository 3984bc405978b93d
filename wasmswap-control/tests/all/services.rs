//! Real servers for the scale-out store: PostgreSQL (Debian's package) and
//! an S3-compatible server (`s3s-fs` from crates.io), started once per test
//! binary on 127.0.0.1 in temporary directories. `.ci/install-services`
//! installs both.
//!
//! Each server runs under a small shell watchdog that stops it when this
//! test process exits, so no server outlives the run.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use wasmswap_control::store::S3Config;

pub const S3_ACCESS_KEY: &str = "wasmswap-test-access";
pub const S3_SECRET_KEY: &str = "wasmswap-test-secret-key";

pub struct Services {
    /// `postgres://wasmswap@127.0.0.1:{port}` (append `/{db}`).
    pub pg_base: String,
    /// `http://127.0.0.1:{port}`.
    pub s3_endpoint: String,
    s3_root: PathBuf,
    _dirs: Vec<tempfile::TempDir>,
    /// The watchdog shells; each ends with its server.
    _watchdogs: std::sync::Mutex<Vec<std::process::Child>>,
}

static SERVICES: OnceLock<Services> = OnceLock::new();

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn pg_bin(name: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("PostgreSQL's {name} not found under /usr/lib/postgresql: run .ci/install-services")
    })
}

fn s3s_bin() -> PathBuf {
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo"));
    let p = home.join("bin/s3s-fs");
    assert!(
        p.exists(),
        "{} not found: run .ci/install-services",
        p.display()
    );
    p
}

/// Runs `command` (a shell command line) under a watchdog that stops it
/// with `signal` once this process is gone; as `user` when given.
fn spawn_watched(
    command: &str,
    signal: &str,
    user: Option<&str>,
    log: &Path,
) -> std::process::Child {
    let script = format!(
        "{command} & child=$!; while [ -d /proc/{parent} ] && kill -0 $child 2>/dev/null; do sleep 0.5; done; kill -{signal} $child 2>/dev/null; wait $child",
        parent = std::process::id()
    );
    let log = std::fs::File::create(log).unwrap();
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--", "sh", "-c", &script]);
            c
        }
        None => {
            let mut c = Command::new("sh");
            c.args(["-c", &script]);
            c
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting a test service")
}

fn wait_for_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start() -> Services {
    let root = is_root();
    // PostgreSQL refuses to run as root: then it runs as `postgres`.
    let user = root.then_some("postgres");
    let pg_dir = tempfile::Builder::new()
        .prefix("wasmswap-pg")
        .tempdir()
        .unwrap();
    let data = pg_dir.path().join("data");
    if root {
        let ok = Command::new("chown")
            .args(["-R", "postgres", pg_dir.path().to_str().unwrap()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "chown of the PostgreSQL directory failed");
    }
    let initdb = format!(
        "{} -D {} -U wasmswap -A trust --no-sync -E UTF8",
        pg_bin("initdb").display(),
        data.display()
    );
    let out = match user {
        Some(u) => Command::new("runuser")
            .args(["-u", u, "--", "sh", "-c", &initdb])
            .output(),
        None => Command::new("sh").args(["-c", &initdb]).output(),
    }
    .unwrap();
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pg_port = free_port();
    let pg_log = pg_dir.path().join("postgres.log");
    let pg = spawn_watched(
        &format!(
            "exec {} -D {} -p {pg_port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            pg_bin("postgres").display(),
            data.display(),
            pg_dir.path().display()
        ),
        "INT",
        user,
        &pg_log,
    );
    wait_for_port(pg_port, "PostgreSQL", &pg_log);

    let s3_dir = tempfile::Builder::new()
        .prefix("wasmswap-s3")
        .tempdir()
        .unwrap();
    let s3_port = free_port();
    let s3_log = s3_dir.path().join("s3s-fs.log");
    let s3_root = s3_dir.path().join("root");
    std::fs::create_dir_all(&s3_root).unwrap();
    let s3 = spawn_watched(
        &format!(
            "exec {} --host 127.0.0.1 --port {s3_port} --access-key {S3_ACCESS_KEY} --secret-key {S3_SECRET_KEY} {}",
            s3s_bin().display(),
            s3_root.display()
        ),
        "TERM",
        None,
        &s3_log,
    );
    wait_for_port(s3_port, "s3s-fs", &s3_log);
    Services {
        pg_base: format!("postgres://wasmswap@127.0.0.1:{pg_port}"),
        s3_endpoint: format!("http://127.0.0.1:{s3_port}"),
        s3_root,
        _dirs: vec![pg_dir, s3_dir],
        _watchdogs: std::sync::Mutex::new(vec![pg, s3]),
    }
}

/// The servers, started on first use.
pub fn services() -> &'static Services {
    SERVICES.get_or_init(start)
}

impl Services {
    /// A new, empty database; its URL.
    pub async fn fresh_database(&self) -> String {
        use sqlx::Connection as _;
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut conn = loop {
            match sqlx::PgConnection::connect(&format!("{}/postgres", self.pg_base)).await {
                Ok(c) => break c,
                // Listening is not the same as accepting: startup recovery.
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("PostgreSQL does not accept connections: {e}"),
            }
        };
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        format!("{}/{name}", self.pg_base)
    }

    /// A new, empty bucket.
    pub fn fresh_bucket(&self) -> S3Config {
        let bucket = format!("b-{}", uuid::Uuid::new_v4().simple());
        // s3s-fs keeps each bucket as a directory under its root.
        std::fs::create_dir_all(self.s3_root.join(&bucket)).unwrap();
        S3Config {
            endpoint: Some(self.s3_endpoint.clone()),
            bucket,
            region: "us-east-1".into(),
            access_key_id: S3_ACCESS_KEY.into(),
            secret_access_key: S3_SECRET_KEY.into(),
            allow_http: true,
        }
    }
}
