//! The README's quick start, as written: clone the repository, run the one
//! command, and check what the README promises — a cluster on 127.0.0.1
//! with nodes in two regions, the example service answering, a canary from
//! v1 to v2 under traffic with a summary and no errors, the dashboard, the
//! CLI commands it suggests, and a clean stop on Ctrl-C.
//!
//! It builds the project from scratch in the clone, so it is opt-in:
//! `.ci/run` runs it (with `QUICKSTART_TARGET_DIR` pointing at the CI
//! build's target directory, so the clone reuses the compiled dependencies;
//! the workspace's own crates and guests still build from the clone).

// Tests report where the screenshot went and echo the command's output.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Kills the process group if the test fails before stopping it (the
/// cluster would keep ports 8000–8004).
struct GroupGuard(std::process::Child);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let group = format!("-{}", self.0.id());
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &group])
                .status();
            let _ = self.0.wait();
        }
    }
}

/// The lines of the README's fenced block after `<!-- {marker} -->`.
fn block(readme: &str, marker: &str) -> Vec<String> {
    let start = readme
        .find(&format!("<!-- {marker} -->"))
        .unwrap_or_else(|| panic!("README has no `<!-- {marker} -->` block"));
    let rest = &readme[start..];
    let fence = rest.find("```").unwrap();
    let body = &rest[fence..];
    let body = &body[body.find('\n').unwrap() + 1..];
    let end = body.find("```").unwrap();
    body[..end]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
#[ignore = "builds the project in a fresh clone; .ci/run runs it"]
fn readme_quick_start_works_verbatim_from_a_clean_clone() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let start = block(&readme, "quickstart");
    let after = block(&readme, "quickstart-second-terminal");
    // The README clones from the project's address; here, from this checkout.
    let clone = &start[0];
    assert!(
        clone.starts_with("git clone "),
        "the quick start begins with a clone: {clone}"
    );
    let url = clone.split_whitespace().nth(2).unwrap();
    let script = start
        .join("\n")
        .replacen(url, &repo.display().to_string(), 1);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    let mut cmd = Command::new("bash");
    cmd.arg("-ec")
        .arg(&script)
        .current_dir(dir.path())
        .env("XDG_CONFIG_HOME", &config)
        .env_remove("WASMSWAP_CREDENTIALS")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // Its own process group: Ctrl-C goes to the whole group, as in a terminal.
        .process_group(0);
    if let Some(target) = std::env::var_os("QUICKSTART_TARGET_DIR") {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    let mut child = GroupGuard(cmd.spawn().unwrap());
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = BufReader::new(child.0.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            println!("| {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut out: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60 * 60);
    let wait_for = |what: &str, out: &mut Vec<String>| {
        while !out.iter().any(|l| l.contains(what)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => out.push(l),
                Err(e) => panic!("no `{what}` in the output ({e}):\n{}", out.join("\n")),
            }
        }
    };

    // What the README promises, in order.
    wait_for("dashboard", &mut out);
    wait_for("cluster running", &mut out);
    let text = out.join("\n");
    for promise in [
        "control plane  http://127.0.0.1:8000/api/v1",
        "dashboard      http://127.0.0.1:8000/",
        "eu-west-1",
        "eu-west-2",
        "us-east-1",
        "us-east-2",
        "service `hello` serving hello-v1.0.0",
        "demo: canary hello-v1.0.0 → hello-v2.0.0",
        "completed",
        "demo summary: hello-v1.0.0 → hello-v2.0.0 completed",
    ] {
        assert!(text.contains(promise), "missing `{promise}` in:\n{text}");
    }
    let summary = out.iter().find(|l| l.starts_with("demo summary")).unwrap();
    assert!(
        summary.ends_with(", 0 errors"),
        "no request failed: {summary}"
    );
    for version in ["1.0.0", "2.0.0"] {
        assert!(
            out.iter().any(|l| l.trim_start().starts_with(version)),
            "a summary row for {version}:\n{text}"
        );
    }

    // The service answers (now v2) and the dashboard is served.
    let get = |url: &str| {
        Command::new("curl")
            .args(["-sS", "-i", "--max-time", "10", url])
            .output()
            .unwrap()
    };
    let data_url = out
        .iter()
        .find_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("http://127.0.0.1:8001"))
        })
        .expect("a node's data plane URL")
        .to_string();
    let hello = String::from_utf8_lossy(&get(&format!("{data_url}/hello/")).stdout).into_owned();
    assert!(hello.contains("hello from v2"), "{hello}");
    let page = String::from_utf8_lossy(&get("http://127.0.0.1:8000/").stdout).into_owned();
    assert!(
        page.contains("200 OK") && page.contains("<title>"),
        "dashboard: {page:.300}"
    );

    // The second terminal's commands, as written, in the clone.
    let clone_dir = dir.path().join("wasmswap");
    for line in &after {
        let mut c = Command::new("bash");
        c.arg("-ec")
            .arg(line)
            .current_dir(&clone_dir)
            .env("XDG_CONFIG_HOME", &config);
        if let Some(target) = std::env::var_os("QUICKSTART_TARGET_DIR") {
            c.env("CARGO_TARGET_DIR", target);
        }
        let o = c.output().unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "`{line}` failed: {stdout}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            stdout.contains("eu-west-1") || stdout.contains("hello-v2.0.0"),
            "`{line}` shows the cluster: {stdout}"
        );
    }

    // Ctrl-C: everything stops cleanly.
    let pgid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-s", "INT", "--", &format!("-{pgid}")])
            .status()
            .unwrap()
            .success()
    );
    wait_for("stopped", &mut out);
    let status = child.0.wait().unwrap();
    assert!(status.success(), "exit status after Ctrl-C: {status}");
    for port in [8000, 8001, 8002, 8003, 8004] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} closed after the stop"
        );
    }
}
