//! The WASI sandbox: nothing from the host unless granted; no way out of a preopen.

use serde_json::json;
use wasmswap_core::{Capabilities, Error, Limits};

use crate::version_with;

fn probe(caps: Capabilities) -> wasmswap_core::Version {
    version_with(
        test_programs::SANDBOX_PROBE_COMPONENT,
        Limits::default(),
        caps,
    )
}

#[tokio::test]
async fn nothing_is_inherited_by_default() {
    // SAFETY of the test: a variable set on the host must not leak.
    let v = probe(Capabilities::none());
    assert_eq!(
        v.invoke_json("env-count", &json!([])).await.unwrap(),
        json!(0)
    );
    assert_eq!(
        v.invoke_json("env-var", &json!(["PATH"])).await.unwrap(),
        json!(null)
    );
    let r = v
        .invoke_json("read-file", &json!(["/etc/passwd"]))
        .await
        .unwrap();
    assert!(r.get("err").is_some(), "{r}");
    let r = v.invoke_json("list-dir", &json!(["/"])).await.unwrap();
    assert!(r.get("err").is_some(), "{r}");
    // Frozen clock, fixed-seed randomness.
    assert_eq!(
        v.invoke_json("wall-clock-secs", &json!([])).await.unwrap(),
        json!(0)
    );
    let a = v.invoke_json("random-u64", &json!([])).await.unwrap();
    let b = v.invoke_json("random-u64", &json!([])).await.unwrap();
    assert_eq!(a, b, "ungranted randomness is deterministic");
    // Writing to stdout without a grant neither fails the call nor reaches the host.
    assert_eq!(
        v.invoke_json("print-stdout", &json!(["hi"])).await.unwrap(),
        json!(null)
    );
}

#[tokio::test]
async fn no_network_without_a_grant() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let v = probe(Capabilities::none().env("A", "1").wall_clock().random());
    let r = v.invoke_json("tcp-connect", &json!([addr])).await.unwrap();
    assert!(
        r.get("err").is_some(),
        "a sandboxed guest connected out: {r}"
    );
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the listener saw a connection"
    );
}

#[tokio::test]
async fn granted_env_clock_and_random() {
    let v = probe(
        Capabilities::none()
            .env("GREETING", "hello")
            .wall_clock()
            .random(),
    );
    assert_eq!(
        v.invoke_json("env-var", &json!(["GREETING"]))
            .await
            .unwrap(),
        json!("hello")
    );
    assert_eq!(
        v.invoke_json("env-count", &json!([])).await.unwrap(),
        json!(1)
    );
    let now = v
        .invoke_json("wall-clock-secs", &json!([]))
        .await
        .unwrap()
        .as_u64()
        .unwrap();
    assert!(now > 1_700_000_000, "{now}");
    let a = v.invoke_json("random-u64", &json!([])).await.unwrap();
    let b = v.invoke_json("random-u64", &json!([])).await.unwrap();
    assert_ne!(a, b);
}

#[tokio::test]
async fn preopens_are_read_only_unless_writable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "from the host").unwrap();

    let ro = probe(Capabilities::none().preopen(dir.path(), "/data"));
    assert_eq!(
        ro.invoke_json("read-file", &json!(["/data/hello.txt"]))
            .await
            .unwrap(),
        json!({"ok": "from the host"})
    );
    assert_eq!(
        ro.invoke_json("list-dir", &json!(["/data"])).await.unwrap(),
        json!({"ok": ["hello.txt"]})
    );
    let w = ro
        .invoke_json("write-file", &json!(["/data/new.txt", "x"]))
        .await
        .unwrap();
    assert!(w.get("err").is_some(), "{w}");
    assert!(!dir.path().join("new.txt").exists());

    let rw = probe(Capabilities::none().preopen_writable(dir.path(), "/data"));
    assert_eq!(
        rw.invoke_json("write-file", &json!(["/data/new.txt", "written"]))
            .await
            .unwrap(),
        json!({"ok": null})
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("new.txt")).unwrap(),
        "written"
    );
}

#[tokio::test]
async fn no_escape_from_a_preopen() {
    let root = tempfile::tempdir().unwrap();
    let inside = root.path().join("inside");
    std::fs::create_dir(&inside).unwrap();
    std::fs::write(root.path().join("secret.txt"), "outside").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(root.path().join("secret.txt"), inside.join("link")).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("/etc", inside.join("etc")).unwrap();

    let v = probe(Capabilities::none().preopen_writable(&inside, "/data"));
    for path in [
        "/data/../secret.txt",
        "/data/link",
        "/data/etc/passwd",
        "/etc/passwd",
        "../secret.txt",
    ] {
        let r = v.invoke_json("read-file", &json!([path])).await.unwrap();
        assert!(r.get("err").is_some(), "{path} must not be readable: {r}");
    }
    let w = v
        .invoke_json("write-file", &json!(["/data/../escaped.txt", "x"]))
        .await
        .unwrap();
    assert!(w.get("err").is_some(), "{w}");
    assert!(!root.path().join("escaped.txt").exists());
}

#[tokio::test]
async fn p1_modules_are_sandboxed_too() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a"), "1").unwrap();
    std::fs::write(dir.path().join("b"), "2").unwrap();
    let none = version_with(
        test_programs::NUMERIC_MODULE,
        Limits::default(),
        Capabilities::none(),
    );
    assert_eq!(
        none.invoke_json("env_count", &json!([])).await.unwrap(),
        json!(0)
    );
    assert_eq!(
        none.invoke_json("reads_etc_passwd", &json!([]))
            .await
            .unwrap(),
        json!(0)
    );
    assert_eq!(
        none.invoke_json("count_data_entries", &json!([]))
            .await
            .unwrap(),
        json!(-1)
    );

    let granted = version_with(
        test_programs::NUMERIC_MODULE,
        Limits::default(),
        Capabilities::none()
            .env("A", "1")
            .env("B", "2")
            .preopen(dir.path(), "/data"),
    );
    assert_eq!(
        granted.invoke_json("env_count", &json!([])).await.unwrap(),
        json!(2)
    );
    assert_eq!(
        granted
            .invoke_json("count_data_entries", &json!([]))
            .await
            .unwrap(),
        json!(2)
    );
    assert_eq!(
        granted
            .invoke_json("reads_etc_passwd", &json!([]))
            .await
            .unwrap(),
        json!(0)
    );
}

#[test]
fn bad_grants_fail_at_version_creation() {
    let rt = crate::runtime();
    let a = rt
        .load(&test_programs::bytes(
            test_programs::SANDBOX_PROBE_COMPONENT,
        ))
        .unwrap();
    let e = wasmswap_core::Version::new(
        &rt,
        &a,
        "x",
        Limits::default(),
        Capabilities::none().preopen("/definitely/not/here", "/data"),
    )
    .unwrap_err();
    assert!(
        matches!(&e, Error::Sandbox(m) if m.contains("/definitely/not/here")),
        "{e}"
    );
}
