//! On-disk cache of precompiled artifacts, so a node restart or a rollback to
//! an old version never recompiles.
//!
//! Files are named `{sha256 of the wasm}-{engine compatibility hash}.cwasm`, so
//! an engine with other settings or another wasmtime never opens a file it
//! cannot run. Each file starts with a magic tag and the SHA-256 of the
//! payload; a file that fails that check (truncated, corrupted, tampered) is
//! deleted and the binary recompiled. Writes go to a temporary file that is
//! renamed into place, so readers never see half a file.

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::artifact::{ArtifactKind, Compiled, ContentId};

const MAGIC: &[u8; 8] = b"WSWPCWv1";
const HEADER: usize = MAGIC.len() + 32;

#[derive(Debug)]
pub(crate) struct DiskCache {
    dir: PathBuf,
    engine_tag: String,
}

impl DiskCache {
    pub(crate) fn open(dir: &Path, engine: &wasmtime::Engine) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(Self {
            dir: dir.to_path_buf(),
            engine_tag: format!("{:016x}", h.finish()),
        })
    }

    fn path(&self, id: &ContentId) -> PathBuf {
        self.dir.join(format!("{id}-{}.cwasm", self.engine_tag))
    }

    /// Loads a precompiled artifact, or `None` when absent or unusable (in
    /// which case the bad file is removed).
    pub(crate) fn get(
        &self,
        engine: &wasmtime::Engine,
        id: &ContentId,
        kind: ArtifactKind,
    ) -> Option<Compiled> {
        let path = self.path(id);
        let bytes = fs::read(&path).ok()?;
        match self.decode(engine, &bytes, kind) {
            Ok(compiled) => Some(compiled),
            Err(why) => {
                tracing::warn!(path = %path.display(), why, "discarding unusable cache file");
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    fn decode(
        &self,
        engine: &wasmtime::Engine,
        bytes: &[u8],
        kind: ArtifactKind,
    ) -> Result<Compiled, String> {
        if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
            return Err("missing header".into());
        }
        let (digest, payload) = bytes[MAGIC.len()..].split_at(32);
        if Sha256::digest(payload).as_slice() != digest {
            return Err("payload checksum mismatch".into());
        }
        let expected = match kind {
            ArtifactKind::Module => wasmtime::Precompiled::Module,
            ArtifactKind::Component => wasmtime::Precompiled::Component,
        };
        if wasmtime::Engine::detect_precompiled(payload) != Some(expected) {
            return Err("not a precompiled artifact of the expected kind".into());
        }
        deserialize(engine, payload, kind).map_err(|e| format!("{e:#}"))
    }

    /// Stores a compiled artifact. Failures are logged, never fatal: the cache
    /// is an optimisation.
    pub(crate) fn put(&self, id: &ContentId, compiled: &Compiled) {
        if let Err(e) = self.try_put(id, compiled) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not write cache file");
        }
    }

    fn try_put(&self, id: &ContentId, compiled: &Compiled) -> std::io::Result<()> {
        let payload = match compiled {
            Compiled::Module(m) => m.serialize(),
            Compiled::Component(c) => c.serialize(),
        }
        .map_err(std::io::Error::other)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(MAGIC)?;
        tmp.write_all(&Sha256::digest(&payload))?;
        tmp.write_all(&payload)?;
        tmp.as_file().sync_all()?;
        tmp.persist(self.path(id)).map_err(|e| e.error)?;
        Ok(())
    }
}

/// Turns precompiled bytes back into code.
#[allow(unsafe_code)]
fn deserialize(
    engine: &wasmtime::Engine,
    payload: &[u8],
    kind: ArtifactKind,
) -> wasmtime::Result<Compiled> {
    // SAFETY: wasmtime requires that the bytes came from `serialize` of a
    // compatible engine, since they are mapped as executable code. This cache
    // only reads files it wrote itself: the file name carries the engine's
    // compatibility hash, and the payload's SHA-256 (checked by the caller)
    // proves it is byte-for-byte what `try_put` serialized. Wasmtime also
    // re-checks the engine settings recorded in the artifact.
    unsafe {
        Ok(match kind {
            ArtifactKind::Module => {
                Compiled::Module(wasmtime::Module::deserialize(engine, payload)?)
            }
            ArtifactKind::Component => Compiled::Component(
                wasmtime::component::Component::deserialize(engine, payload)?,
            ),
        })
    }
}
