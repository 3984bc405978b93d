//! Content-addressed binaries in an object store (a local directory or an
//! S3-compatible bucket), zstd-compressed, verified on every read.
//!
//! The key is the SHA-256 of the uncompressed bytes, so equal binaries are
//! stored once. An object store write is all-or-nothing (the local backend
//! writes a temporary file and renames it; S3 makes an object visible only
//! when its upload completes), so a reader never sees half a binary.

use std::sync::Arc;

use bytes::Bytes;
use object_store::{ObjectStore, PutPayload, path::Path};
use sha2::{Digest, Sha256};

use super::{StoreError, Unwritable};

/// zstd level: a 3-5x smaller wasm binary for a few milliseconds per MiB.
const ZSTD_LEVEL: i32 = 3;

/// The stored form's name, recorded with each blob row.
pub const ENCODING: &str = "zstd";

/// Where binaries live.
#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// For a local directory: its path. `object_store` renames a staged
    /// file into place without fsync; this store syncs the file and the
    /// directory before a row may name it, so a committed row survives a
    /// power loss with its binary.
    local: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blobs({})", self.store)
    }
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn checksum(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn key(checksum: &str) -> Path {
    Path::from(format!("sha256/{checksum}.zst"))
}

impl Blobs {
    /// Binaries in `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store, local: None }
    }

    /// Binaries in a local directory (already set up as `store`). Removes
    /// staging files a crash left behind.
    pub fn local(store: Arc<dyn ObjectStore>, dir: std::path::PathBuf) -> Self {
        if let Ok(entries) = std::fs::read_dir(dir.join("sha256")) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().contains('#') {
                    tracing::info!(file = %e.path().display(), "removing an interrupted upload");
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Self {
            store,
            local: Some(dir),
        }
    }

    /// fsyncs the object's file and its directory (local directory only).
    /// `false` if the file is not there (any more).
    async fn sync(&self, checksum: &str) -> Result<bool, StoreError> {
        let Some(dir) = &self.local else {
            return Ok(true);
        };
        let dir = dir.join("sha256");
        let file = dir.join(format!("{checksum}.zst"));
        let synced = tokio::task::spawn_blocking(move || {
            std::fs::File::open(&file)?.sync_all()?;
            std::fs::File::open(&dir)?.sync_all()
        })
        .await
        .map_err(|e| StoreError::Blob(format!("sync task failed: {e}")))?;
        match synced {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::Blob(format!("syncing the binary: {e}"))),
        }
    }

    /// Compresses and writes `bytes` under `checksum` (their SHA-256),
    /// unless an object is already there. Returns the stored size.
    pub async fn put(&self, checksum: &str, bytes: Bytes) -> Result<u64, StoreError> {
        let key = key(checksum);
        match self.store.head(&key).await {
            // Written by a process that may have died before its sync. Gone
            // by the time of the sync (a sweep removed it after the look):
            // written again below, as if it had not been there.
            Ok(meta) => {
                if self.sync(checksum).await? {
                    return Ok(meta.size);
                }
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(StoreError::Blob(e.to_string())),
        }
        let compressed =
            tokio::task::spawn_blocking(move || zstd::encode_all(&bytes[..], ZSTD_LEVEL))
                .await
                .map_err(|e| StoreError::Blob(format!("compression task failed: {e}")))?
                .map_err(|e| StoreError::Blob(format!("compression failed: {e}")))?;
        let size = compressed.len() as u64;
        self.store
            .put(&key, PutPayload::from(compressed))
            .await
            .map_err(write_failure)?;
        if !self.sync(checksum).await? {
            // Removed again between the write and the sync: the caller's
            // check that its row is still live reports the sweep.
            tracing::debug!(checksum, "binary removed as it was written");
        }
        Ok(size)
    }

    /// The binary with this checksum, decompressed and verified.
    pub async fn get(&self, checksum: &str) -> Result<Bytes, StoreError> {
        let got = match self.store.get(&key(checksum)).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StoreError::BlobMissing(checksum.to_string()));
            }
            Err(e) => return Err(StoreError::Blob(e.to_string())),
        };
        let compressed = got
            .bytes()
            .await
            .map_err(|e| StoreError::Blob(e.to_string()))?;
        let want = checksum.to_string();
        tokio::task::spawn_blocking(move || {
            let bytes = zstd::decode_all(&compressed[..]).map_err(|e| StoreError::BlobCorrupt {
                checksum: want.clone(),
                reason: format!("does not decompress: {e}"),
            })?;
            let got = self::checksum(&bytes);
            if got != want {
                return Err(StoreError::BlobCorrupt {
                    checksum: want,
                    reason: format!("its content hashes to {got}"),
                });
            }
            Ok(Bytes::from(bytes))
        })
        .await
        .map_err(|e| StoreError::Blob(format!("decompression task failed: {e}")))?
    }

    /// Whether an object exists for this checksum.
    pub async fn exists(&self, checksum: &str) -> Result<bool, StoreError> {
        match self.store.head(&key(checksum)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(StoreError::Blob(e.to_string())),
        }
    }

    /// Removes the object (absent is fine).
    pub async fn delete(&self, checksum: &str) -> Result<(), StoreError> {
        match self.store.delete(&key(checksum)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(StoreError::Blob(e.to_string())),
        }
    }

    /// Overwrites the stored object with raw bytes (tests: simulate rot).
    #[doc(hidden)]
    pub async fn put_raw(&self, checksum: &str, raw: Vec<u8>) -> Result<(), StoreError> {
        self.store
            .put(&key(checksum), PutPayload::from(raw))
            .await
            .map(|_| ())
            .map_err(|e| StoreError::Blob(e.to_string()))
    }
}

/// A failed write, told apart by cause: a full or read-only store is the
/// operator's to fix and is said so; anything else is an internal error.
fn write_failure(e: object_store::Error) -> StoreError {
    use std::io::ErrorKind;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                ErrorKind::StorageFull | ErrorKind::QuotaExceeded => {
                    return StoreError::BlobUnwritable(Unwritable::Full);
                }
                ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied => {
                    return StoreError::BlobUnwritable(Unwritable::ReadOnly);
                }
                _ => {}
            }
        }
        source = err.source();
    }
    if matches!(e, object_store::Error::PermissionDenied { .. }) {
        return StoreError::BlobUnwritable(Unwritable::ReadOnly);
    }
    StoreError::Blob(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sweep can remove a binary's file between `put`'s look (`head`)
    /// and its fsync, when a registration claims a binary at the sweep's
    /// cutoff (seen with no grace period, as a 500 from a registration).
    /// Here the object store's root and the directory `put` syncs in
    /// differ, so the look finds the object and the sync does not: `put`
    /// must write it again rather than fail.
    #[tokio::test]
    async fn a_binary_gone_between_the_look_and_the_sync_is_written_again() {
        let (seen, synced) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let fs = object_store::local::LocalFileSystem::new_with_prefix(seen.path()).unwrap();
        let blobs = Blobs::local(Arc::new(fs), synced.path().to_path_buf());
        let bytes = Bytes::from_static(b"\0asm\x01\0\0\0");
        let sum = checksum(&bytes);
        blobs.put(&sum, bytes.clone()).await.unwrap();
        let size = blobs.put(&sum, bytes.clone()).await.unwrap();
        assert!(size > 0);
        assert_eq!(blobs.get(&sum).await.unwrap(), bytes);
    }
}
