#![allow(clippy::print_stderr)]
//! The embedded blob store on a real, small filesystem (a 2 MiB tmpfs) that
//! fills up and is then remounted read-only: registration answers with a
//! clear error, nothing is half-written (no module row, no partial file),
//! reads go on, and writes resume once it is writable again.
//!
//! Mounting needs CAP_SYS_ADMIN (CI runs as root). Without it the test says
//! so and checks nothing else.

use std::path::{Path, PathBuf};
use std::process::Command;

use axum::http::StatusCode;
use serde_json::Value;

use wasmswap_control::api::ApiSettings;
use wasmswap_control::auth::Role;
use wasmswap_control::store::{BlobConfig, StoreConfig};

use super::common::{TestApp, generous};

/// A tmpfs of `size` mounted on a fresh directory; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }

    fn remount(&self, opts: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {opts}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A valid module carrying `n` bytes of incompressible custom section.
fn module_of_size(n: usize, seed: u8) -> Vec<u8> {
    let mut m = wat::parse_str("(module (func (export \"f\") (result i32) i32.const 1))").unwrap();
    let mut x = (u64::from(seed) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let payload: Vec<u8> = (0..n)
        .map(|_| {
            // xorshift: zstd cannot shrink it.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let name = b"pad";
    let mut section = Vec::new();
    leb(&mut section, name.len() as u64);
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    m.push(0);
    leb(&mut m, section.len() as u64);
    m.extend_from_slice(&section);
    m
}

fn leb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in walk(dir) {
        out.push(e.strip_prefix(dir).unwrap().display().to_string());
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

async fn module_names(app: &TestApp) -> Vec<String> {
    let r = app
        .get("/api/v1/wasm/modules?limit=100", Role::Viewer)
        .await
        .expect(StatusCode::OK);
    let list = r
        .json
        .as_array()
        .cloned()
        .unwrap_or_else(|| r.json["modules"].as_array().cloned().unwrap_or_default());
    list.iter()
        .map(|m: &Value| m["moduleId"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_full_or_read_only_blob_store_is_a_clear_error_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&dir.path().join("blobs"), "2m") else {
        eprintln!("SKIPPED: mounting a tmpfs needs CAP_SYS_ADMIN (run as root, as CI does)");
        return;
    };
    let config = StoreConfig {
        blobs: BlobConfig::Dir(fs.0.clone()),
        ..StoreConfig::embedded(dir.path())
    };
    let app = TestApp::build(config, generous(), ApiSettings::default()).await;

    app.register("small", "1.0.0", &module_of_size(64 << 10, 1))
        .await
        .expect(StatusCode::CREATED);

    // 1.2 MiB fits beside it in 2 MiB; a second one does not.
    app.register("big", "1.0.0", &module_of_size(1200 << 10, 2))
        .await
        .expect(StatusCode::CREATED);
    let before_full = files_under(&fs.0);

    let r = app
        .register("big", "2.0.0", &module_of_size(1200 << 10, 3))
        .await
        .expect_error(StatusCode::INSUFFICIENT_STORAGE, "storage_full");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("full; nothing was saved"),
        "{}",
        r.json
    );
    assert_eq!(files_under(&fs.0), before_full, "a partial file was left");
    assert_eq!(module_names(&app).await, ["big-v1.0.0", "small-v1.0.0"]);

    // Read-only: refused, named, nothing recorded.
    fs.remount("ro");
    let r = app
        .register("tiny", "1.0.0", &module_of_size(1 << 10, 4))
        .await
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, "storage_read_only");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("read-only"),
        "{}",
        r.json
    );
    assert_eq!(module_names(&app).await, ["big-v1.0.0", "small-v1.0.0"]);
    // Reads still work.
    let r = app
        .get("/api/v1/wasm/modules/small-v1.0.0", Role::Viewer)
        .await
        .expect(StatusCode::OK);
    let checksum = r.json["checksum"].as_str().unwrap().to_string();
    app.get(&format!("/api/v1/wasm/binaries/{checksum}"), Role::Viewer)
        .await
        .expect(StatusCode::OK);

    // Writable again: the same registration succeeds and is listed.
    fs.remount("rw");
    app.register("tiny", "1.0.0", &module_of_size(1 << 10, 4))
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(
        module_names(&app).await,
        ["big-v1.0.0", "small-v1.0.0", "tiny-v1.0.0"]
    );
    assert_eq!(files_under(&fs.0).len(), before_full.len() + 1);
}
