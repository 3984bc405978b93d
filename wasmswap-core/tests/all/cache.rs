//! The on-disk cache of precompiled artifacts: reused across runtimes, and
//! never trusted when corrupt or foreign.

use std::path::{Path, PathBuf};

use serde_json::json;
use wasmswap_core::{LoadSource, Runtime, RuntimeConfig, Version};

fn with_cache(dir: &Path) -> Runtime {
    RuntimeConfig::new().cache_dir(dir).build().unwrap()
}

fn cache_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    v.sort();
    v
}

async fn works(rt: &Runtime, bytes: &[u8]) {
    let a = rt.load(bytes).unwrap();
    let v = Version::new(rt, &a, "c", Default::default(), Default::default()).unwrap();
    assert_eq!(
        v.invoke_json("add", &json!([2, 3])).await.unwrap(),
        json!(5)
    );
}

#[tokio::test]
async fn a_new_runtime_loads_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = test_programs::bytes(test_programs::NUMERIC_MODULE);
    let (_, s) = with_cache(dir.path()).load_traced(&bytes).unwrap();
    assert_eq!(s, LoadSource::Compiled);
    assert_eq!(cache_files(dir.path()).len(), 1);
    let rt = with_cache(dir.path());
    let (_, s) = rt.load_traced(&bytes).unwrap();
    assert_eq!(s, LoadSource::Disk);
    works(&rt, &bytes).await;

    // Components are cached too.
    let comp = test_programs::bytes(test_programs::TYPES_COMPONENT);
    with_cache(dir.path()).load(&comp).unwrap();
    let (_, s) = with_cache(dir.path()).load_traced(&comp).unwrap();
    assert_eq!(s, LoadSource::Disk);
}

#[tokio::test]
async fn corrupt_or_truncated_files_are_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = test_programs::bytes(test_programs::NUMERIC_MODULE);
    with_cache(dir.path()).load(&bytes).unwrap();
    let file = cache_files(dir.path()).remove(0);

    let mut data = std::fs::read(&file).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&file, &data).unwrap();
    let rt = with_cache(dir.path());
    let (_, s) = rt.load_traced(&bytes).unwrap();
    assert_eq!(
        s,
        LoadSource::Compiled,
        "a flipped byte must not be trusted"
    );
    works(&rt, &bytes).await;
    // The bad file was replaced by a good one.
    let (_, s) = with_cache(dir.path()).load_traced(&bytes).unwrap();
    assert_eq!(s, LoadSource::Disk);

    let data = std::fs::read(&file).unwrap();
    std::fs::write(&file, &data[..data.len() / 3]).unwrap();
    let (_, s) = with_cache(dir.path()).load_traced(&bytes).unwrap();
    assert_eq!(s, LoadSource::Compiled);

    std::fs::write(&file, b"").unwrap();
    let (_, s) = with_cache(dir.path()).load_traced(&bytes).unwrap();
    assert_eq!(s, LoadSource::Compiled);
}

#[tokio::test]
async fn a_foreign_artifact_with_a_valid_checksum_is_refused() {
    // Compile the same module with a differently configured engine (fuel on),
    // then plant its (self-consistent) cache file under our engine's name.
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    let bytes = test_programs::wat("add");
    with_cache(ours.path()).load(&bytes).unwrap();
    RuntimeConfig::new()
        .cache_dir(theirs.path())
        .fuel(true)
        .build()
        .unwrap()
        .load(&bytes)
        .unwrap();
    let our_file = cache_files(ours.path()).remove(0);
    let their_file = cache_files(theirs.path()).remove(0);
    assert_ne!(
        our_file.file_name(),
        their_file.file_name(),
        "engine settings are part of the key"
    );
    std::fs::copy(&their_file, &our_file).unwrap();

    let rt = with_cache(ours.path());
    let (_, s) = rt.load_traced(&bytes).unwrap();
    assert_eq!(s, LoadSource::Compiled);
    works(&rt, &bytes).await;
}
