//! The `wasmswap` binary against a real local cluster (control plane and
//! four nodes in two regions, in this process): every subcommand, tables
//! and `--json`, and the exit codes scripts rely on.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use wasmswap_cli::client::exit;
use wasmswap_cli::cluster::{V1, V2};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
}

struct Cli {
    url: String,
    creds: PathBuf,
}

impl Cli {
    async fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[]).await
    }

    async fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_wasmswap"))
            .args(args)
            .env("WASMSWAP_URL", &self.url)
            .env("WASMSWAP_CREDENTIALS", &self.creds)
            .env_remove("WASMSWAP_TOKEN")
            .envs(env.iter().copied())
            .output()
            .await
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args).await;
        assert_eq!(r.code, 0, "wasmswap {args:?}: {}\n{}", r.stdout, r.stderr);
        r
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_against_a_local_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = common::cluster_serving_v1(dir.path()).await;
    let cli = Cli {
        url: cluster.control_url.clone(),
        creds: dir.path().join("creds.json"),
    };

    // Not logged in: exit 3 with a hint.
    let r = cli.run(&["nodes"]).await;
    assert_eq!(r.code, i32::from(exit::AUTH), "{}", r.stderr);
    assert!(r.stderr.contains("wasmswap login"), "{}", r.stderr);
    // A wrong password: 3; a missing flag value: clap's 2.
    let bad = write(dir.path(), "bad-password", b"nope\n");
    let r = cli.run(&["login", "--password-file", &bad]).await;
    assert_eq!(r.code, i32::from(exit::AUTH), "{}", r.stderr);
    assert_eq!(
        cli.run(&["login", "--user"]).await.code,
        i32::from(exit::USAGE)
    );

    let password = cluster.admin_password_file.to_string_lossy().into_owned();
    let r = cli.ok(&["login", "--password-file", &password]).await;
    assert!(r.stdout.contains("as admin (admin)"), "{}", r.stdout);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&cli.creds).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the saved token is private");
    }

    // Nodes: a table by default, JSON with --json.
    let r = cli.ok(&["nodes"]).await;
    for n in &cluster.nodes {
        assert!(
            r.stdout.contains(&n.id) && r.stdout.contains(&n.data_url),
            "{}",
            r.stdout
        );
    }
    let nodes = cli
        .ok(&["nodes", "list", "--region", "us-east", "--json"])
        .await
        .json();
    let ids: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["nodeId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.iter().all(|i| i.starts_with("us-east")));
    let r = cli.ok(&["nodes", "show", "eu-west-1"]).await;
    assert!(
        r.stdout.contains("healthy") && r.stdout.contains(V1),
        "{}",
        r.stdout
    );
    assert_eq!(
        cli.run(&["nodes", "show", "nowhere-9"]).await.code,
        i32::from(exit::NOT_FOUND)
    );

    // Modules: register from a path, list, show, WIT, diff.
    let wasm = write(dir.path(), "add.wasm", &test_programs::wat("add"));
    let m = cli
        .ok(&[
            "modules",
            "register",
            &wasm,
            "--name",
            "calc",
            "--version",
            "1.0.0",
            "--max-memory-mb",
            "16",
            "--json",
        ])
        .await
        .json();
    assert_eq!(m["moduleId"], "calc-v1.0.0");
    assert_eq!(m["limits"]["maxMemoryMB"], 16);
    let r = cli
        .run(&[
            "modules",
            "register",
            &wasm,
            "--name",
            "calc",
            "--version",
            "1.0.0",
        ])
        .await;
    assert_eq!(
        r.code,
        i32::from(exit::REJECTED),
        "a second 1.0.0 conflicts: {}",
        r.stderr
    );
    let garbage = write(dir.path(), "garbage.wasm", b"\0asm\x01\0\0\0garbage");
    let r = cli
        .run(&[
            "modules",
            "register",
            &garbage,
            "--name",
            "calc",
            "--version",
            "9.0.0",
        ])
        .await;
    assert_eq!(r.code, i32::from(exit::REJECTED));
    assert!(r.stderr.contains("error:"), "{}", r.stderr);
    let r = cli
        .run(&[
            "modules",
            "register",
            "/no/such.wasm",
            "--name",
            "x",
            "--version",
            "1.0.0",
        ])
        .await;
    assert_eq!(r.code, i32::from(exit::USAGE));
    assert!(r.stderr.contains("/no/such.wasm"), "{}", r.stderr);

    let r = cli.ok(&["modules", "list"]).await;
    for id in [V1, V2, "calc-v1.0.0"] {
        assert!(r.stdout.contains(id), "{id} listed: {}", r.stdout);
    }
    let listed = cli
        .ok(&["modules", "list", "--name", "hello", "--json"])
        .await
        .json();
    assert_eq!(listed["total"], 2);
    let r = cli.ok(&["modules", "show", V2]).await;
    assert!(
        r.stdout.contains("component") && r.stdout.contains("2.0.0"),
        "{}",
        r.stdout
    );
    let r = cli.ok(&["modules", "wit", V1]).await;
    assert!(r.stdout.contains("incoming-handler"), "{}", r.stdout);
    let diff = cli.ok(&["modules", "diff", V1, V2, "--json"]).await.json();
    assert_eq!(diff["breaksCallers"], false);
    let r = cli.ok(&["modules", "diff", V1, V2]).await;
    assert!(r.stdout.contains("callers compatible"), "{}", r.stdout);
    assert_eq!(
        cli.run(&["modules", "show", "calc-v7.0.0"]).await.code,
        i32::from(exit::NOT_FOUND)
    );

    // Traffic on every node, so the canary's metrics gates have samples.
    let traffic = common::traffic(&cluster);

    // A manual canary: deploy, watch it wait, promote, pause, resume, promote to the end.
    let d = cli
        .ok(&[
            "deploy",
            V2,
            "--stages",
            "20,100",
            "--period",
            "PT0S",
            "--manual",
            "--health-path",
            "/health",
            "--replicas",
            "all",
            "--min-samples",
            "5",
            "--json",
        ])
        .await
        .json();
    let id = d["deploymentId"].as_str().unwrap().to_string();
    let d = wait_for(&cli, &id, |d| d["state"]["awaitingPromotion"] == true).await;
    assert_eq!(d["status"], "in_progress");
    let r = cli.ok(&["status", &id]).await;
    assert!(r.stdout.contains("waiting for `promote`"), "{}", r.stdout);
    assert!(
        r.stdout.contains("eu-west-1"),
        "per-node table: {}",
        r.stdout
    );
    let r = cli.ok(&["status"]).await;
    assert!(
        r.stdout.contains(&id) && r.stdout.contains("in_progress"),
        "{}",
        r.stdout
    );
    let r = cli.ok(&["pause", &id]).await;
    assert!(r.stdout.starts_with("pause: paused"), "{}", r.stdout);
    let r = cli.run(&["pause", &id]).await;
    assert_eq!(
        r.code,
        i32::from(exit::REJECTED),
        "pausing twice: {}",
        r.stderr
    );
    cli.ok(&["resume", &id]).await;
    cli.ok(&["promote", &id]).await;
    let r = cli.ok(&["status", &id, "--watch"]).await;
    assert!(r.stdout.contains("completed"), "{}", r.stdout);
    assert_eq!(cluster.live_version().await.unwrap().as_deref(), Some(V2));

    // Rollback of the completed deployment restores v1 on every node.
    let r = cli.ok(&["rollback", &id, "--json"]).await;
    assert_eq!(r.json()["deploymentId"], id.as_str());
    let d = wait_for(&cli, &id, |d| d["status"] == "rolled_back").await;
    assert_eq!(d["stableModuleId"], V1);
    let http = reqwest::Client::new();
    for n in &cluster.nodes {
        let resp = http
            .get(format!("{}/hello/", n.data_url))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.headers()["x-wasmswap-version"],
            "1.0.0",
            "{} serves v1 again",
            n.id
        );
    }

    // A watched deployment that is aborted ends with exit 7.
    let d = cli
        .ok(&[
            "deploy",
            V2,
            "--stages",
            "50,100",
            "--period",
            "PT1H",
            "--health-path",
            "/health",
            "--min-samples",
            "5",
            "--json",
        ])
        .await
        .json();
    let id = d["deploymentId"].as_str().unwrap().to_string();
    let watch = tokio::spawn({
        let (url, creds, id) = (cli.url.clone(), cli.creds.clone(), id.clone());
        async move { Cli { url, creds }.run(&["status", &id, "--watch"]).await }
    });
    wait_for(&cli, &id, |d| d["state"]["applied"] == true).await;
    cli.ok(&["abort", &id]).await;
    let r = watch.await.unwrap();
    assert_eq!(
        r.code,
        i32::from(exit::ROLLOUT_FAILED),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    // The message says why: the abort, and who.
    assert!(
        r.stderr.contains("ended rolled_back: abort by admin"),
        "{}",
        r.stderr
    );

    // A deployment nobody starts: the watch says so (8) instead of hanging,
    // and a watch with --timeout gives up (8).
    let r = cli
        .run(&[
            "deploy",
            V2,
            "--no-start",
            "--health-path",
            "/health",
            "--watch",
        ])
        .await;
    assert_eq!(
        r.code,
        i32::from(exit::NEEDS_ACTION),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(r.stderr.contains("pending"), "{}", r.stderr);
    let pending = cli
        .ok(&["status", "--service", "hello", "--json"])
        .await
        .json();
    let pending = pending[0]["deploymentId"].as_str().unwrap().to_string();
    cli.ok(&["abort", &pending]).await;
    let d = cli
        .ok(&[
            "deploy",
            V2,
            "--stages",
            "50,100",
            "--period",
            "PT1H",
            "--health-path",
            "/health",
            "--min-samples",
            "5",
            "--json",
        ])
        .await
        .json();
    let id = d["deploymentId"].as_str().unwrap().to_string();
    let r = cli.run(&["status", &id, "--watch", "--timeout", "1"]).await;
    assert_eq!(r.code, i32::from(exit::NEEDS_ACTION), "{}", r.stderr);
    assert!(r.stderr.contains("after 1 s"), "{}", r.stderr);
    cli.ok(&["abort", &id]).await;
    wait_for(&cli, &id, |d| d["status"] == "rolled_back").await;

    // Interfaces: register a WIT file, list, show.
    let wit = write(
        dir.path(),
        "greet.wit",
        b"package acme:greet@1.0.0;\ninterface greet { hello: func(name: string) -> string; }\n",
    );
    let r = cli
        .ok(&["interfaces", "register", &wit, "--id", "acme:greet@1.0.0"])
        .await;
    assert!(r.stdout.contains("registered"), "{}", r.stdout);
    let list = cli.ok(&["interfaces", "list", "--json"]).await.json();
    let iid = list[0]["interfaceId"].as_str().unwrap().to_string();
    let r = cli.ok(&["interfaces", "show", &iid]).await;
    assert!(r.stdout.contains("hello: func"), "{}", r.stdout);
    let r = cli
        .run(&["interfaces", "register", &wit, "--id", "acme-greet"])
        .await;
    assert_eq!(r.code, i32::from(exit::USAGE));

    // A forged token: 3; a control plane that is not there: 6.
    let r = cli
        .run_env(&["nodes"], &[("WASMSWAP_TOKEN", "not.a.jwt")])
        .await;
    assert_eq!(r.code, i32::from(exit::AUTH), "{}", r.stderr);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let r = cli
        .run_env(&["nodes", "--url", &nowhere], &[("WASMSWAP_TOKEN", "x")])
        .await;
    assert_eq!(r.code, i32::from(exit::UNAVAILABLE), "{}", r.stderr);
    assert!(r.stderr.contains("cannot reach"), "{}", r.stderr);

    let r = cli.ok(&["logout"]).await;
    assert!(r.stdout.contains("removed"));
    assert_eq!(cli.run(&["nodes"]).await.code, i32::from(exit::AUTH));
    traffic.abort();
    cluster.shutdown().await.unwrap();
}

/// Polls the deployment (through the CLI) until `done` holds.
async fn wait_for(cli: &Cli, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..600 {
        let d = cli.ok(&["status", id, "--json"]).await.json();
        if done(&d) {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("deployment {id} did not reach the expected state");
}
