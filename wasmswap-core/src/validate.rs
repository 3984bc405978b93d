//! Validation with `wasmparser` before anything reaches Cranelift: header,
//! size, proposals, imports against the capability set, declared table and
//! memory sizes. Each refusal is a [`LoadError`] that names the problem.

use wasmparser::{Parser, Payload, Validator, WasmFeatures};

use crate::artifact::{ArtifactKind, WasiVersion};
use crate::config::RuntimeConfig;
use crate::error::LoadError;

/// What validation learns about a binary without compiling it.
#[derive(Debug, Clone)]
pub(crate) struct Inspection {
    pub kind: ArtifactKind,
    pub wasi: Option<WasiVersion>,
    pub imports: Vec<String>,
}

/// The proposals this runtime runs: WebAssembly 2.0 (with SIMD optional) and
/// the component model, plus the two encodings LLVM now emits by default.
/// Engine and validator are configured from this one set.
pub(crate) fn allowed_features(config: &RuntimeConfig) -> WasmFeatures {
    let mut f = WasmFeatures::WASM2
        | WasmFeatures::COMPONENT_MODEL
        | WasmFeatures::BULK_MEMORY_OPT
        | WasmFeatures::CALL_INDIRECT_OVERLONG;
    // externref/anyref need wasmtime's GC, which this runtime is built
    // without; funcref tables are not affected.
    f.remove(WasmFeatures::GC_TYPES);
    if !config.simd {
        f.remove(WasmFeatures::SIMD);
    }
    f
}

/// The size bound, checked before anything reads the bytes (hashing included).
pub(crate) fn check_size(bytes: &[u8], config: &RuntimeConfig) -> Result<(), LoadError> {
    if bytes.len() > config.max_module_bytes {
        return Err(LoadError::TooLarge {
            size: bytes.len(),
            limit: config.max_module_bytes,
        });
    }
    Ok(())
}

pub(crate) fn inspect(bytes: &[u8], config: &RuntimeConfig) -> Result<Inspection, LoadError> {
    check_size(bytes, config)?;
    let kind = header_kind(bytes)?;

    let features = allowed_features(config);
    if let Err(e) = Validator::new_with_features(features).validate_all(bytes) {
        // Valid under every proposal but not ours: say it is the proposal, not
        // a broken binary.
        let valid_with_all = Validator::new_with_features(WasmFeatures::all())
            .validate_all(bytes)
            .is_ok();
        let (offset, message) = (e.offset(), e.message().to_string());
        return Err(if valid_with_all {
            LoadError::DisallowedProposal { offset, message }
        } else {
            LoadError::Invalid { offset, message }
        });
    }

    let mut imports = Vec::new();
    // Only the outermost component's imports reach the host; imports of
    // nested core modules are satisfied inside the component.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| LoadError::Invalid {
            offset: e.offset(),
            message: e.message().to_string(),
        })?;
        match payload {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ImportSection(reader) if depth == 1 => {
                for import in reader.into_imports() {
                    let import = import.map_err(invalid)?;
                    imports.push(format!("{}::{}", import.module, import.name));
                }
            }
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(invalid)?;
                    // Type imports (world-level records, enums, ...) are
                    // definitions, not capabilities.
                    if !matches!(import.ty, wasmparser::ComponentTypeRef::Type(_)) {
                        imports.push(import.name.name.to_string());
                    }
                }
            }
            Payload::TableSection(reader) => {
                for table in reader {
                    let declared = table.map_err(invalid)?.ty.initial;
                    if declared > config.max_table_elements {
                        return Err(LoadError::TableTooLarge {
                            declared,
                            limit: config.max_table_elements,
                        });
                    }
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader {
                    let ty = memory.map_err(invalid)?;
                    let page = 1u64 << ty.page_size_log2.unwrap_or(16);
                    let declared_bytes = ty.initial.saturating_mul(page);
                    if declared_bytes > config.max_memory_bytes {
                        return Err(LoadError::MemoryTooLarge {
                            declared_bytes,
                            limit_bytes: config.max_memory_bytes,
                        });
                    }
                }
            }
            _ => {}
        }
    }

    for import in &imports {
        if !config
            .allowed_import_prefixes
            .iter()
            .any(|p| import.starts_with(p.as_str()))
        {
            return Err(LoadError::DisallowedImport {
                import: import.clone(),
            });
        }
    }

    let wasi = if imports.iter().any(|i| i.starts_with("wasi:")) {
        Some(WasiVersion::P2)
    } else if imports
        .iter()
        .any(|i| i.starts_with("wasi_snapshot_preview1::"))
    {
        Some(WasiVersion::P1)
    } else {
        None
    };
    Ok(Inspection {
        kind,
        wasi,
        imports,
    })
}

fn invalid(e: wasmparser::BinaryReaderError) -> LoadError {
    LoadError::Invalid {
        offset: e.offset(),
        message: e.message().to_string(),
    }
}

fn header_kind(bytes: &[u8]) -> Result<ArtifactKind, LoadError> {
    if bytes.len() < 4 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::BadMagic);
    }
    if bytes.len() < 8 {
        return Err(LoadError::Invalid {
            offset: bytes.len(),
            message: "truncated header: expected a 4-byte version after the magic".into(),
        });
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    let layer = u16::from_le_bytes([bytes[6], bytes[7]]);
    match (version, layer) {
        (1, 0) => Ok(ArtifactKind::Module),
        (0xd, 1) => Ok(ArtifactKind::Component),
        _ => Err(LoadError::UnsupportedVersion { version, layer }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inspect_default(bytes: &[u8]) -> Result<Inspection, LoadError> {
        inspect(bytes, &RuntimeConfig::default())
    }

    #[test]
    fn header_errors_are_specific() {
        assert_eq!(inspect_default(b"").unwrap_err(), LoadError::BadMagic);
        assert_eq!(
            inspect_default(b"\x7fELF\x02\x01").unwrap_err(),
            LoadError::BadMagic
        );
        assert!(matches!(
            inspect_default(b"\0asm\x01").unwrap_err(),
            LoadError::Invalid { offset: 5, .. }
        ));
        assert_eq!(
            inspect_default(b"\0asm\x02\0\0\0").unwrap_err(),
            LoadError::UnsupportedVersion {
                version: 2,
                layer: 0
            }
        );
    }

    #[test]
    fn truncated_binary_reports_offset() {
        let full =
            wat::parse_str("(module (func (export \"f\") (result i32) i32.const 7))").unwrap();
        let cut = &full[..full.len() - 3];
        match inspect_default(cut).unwrap_err() {
            LoadError::Invalid { offset, .. } => assert!(offset > 8 && offset <= full.len()),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn size_limit_is_checked_first() {
        let mut cfg = RuntimeConfig::default();
        cfg.max_module_bytes(16);
        let bytes = wat::parse_str("(module (func (export \"f\")))").unwrap();
        assert!(matches!(
            inspect(&bytes, &cfg).unwrap_err(),
            LoadError::TooLarge { limit: 16, .. }
        ));
    }

    #[test]
    fn disallowed_proposal_is_named() {
        // Threads: shared memory is valid wasm, but not a proposal we run.
        let bytes = wat::parse_str("(module (memory 1 1 shared))").unwrap();
        match inspect_default(&bytes).unwrap_err() {
            LoadError::DisallowedProposal { message, .. } => {
                assert!(message.contains("threads"), "{message}")
            }
            other => panic!("expected DisallowedProposal, got {other:?}"),
        }
    }

    #[test]
    fn imports_outside_the_capability_set_are_named() {
        let bytes = wat::parse_str(r#"(module (import "env" "system" (func)))"#).unwrap();
        assert_eq!(
            inspect_default(&bytes).unwrap_err(),
            LoadError::DisallowedImport {
                import: "env::system".into()
            }
        );
    }

    #[test]
    fn declared_sizes_are_bounded() {
        let table = wat::parse_str("(module (table 100000000 funcref))").unwrap();
        assert!(matches!(
            inspect_default(&table).unwrap_err(),
            LoadError::TableTooLarge {
                declared: 100_000_000,
                ..
            }
        ));
        let memory = wat::parse_str("(module (memory 65536))").unwrap();
        assert!(matches!(
            inspect_default(&memory).unwrap_err(),
            LoadError::MemoryTooLarge {
                declared_bytes: 4_294_967_296,
                ..
            }
        ));
    }

    #[test]
    fn wasi_version_comes_from_imports() {
        let p1 = wat::parse_str(
            r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32))))"#,
        )
        .unwrap();
        let i = inspect_default(&p1).unwrap();
        assert_eq!(i.kind, ArtifactKind::Module);
        assert_eq!(i.wasi, Some(WasiVersion::P1));
        assert_eq!(
            i.imports,
            vec!["wasi_snapshot_preview1::proc_exit".to_string()]
        );
    }
}
