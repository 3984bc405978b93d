//! Loading: validation errors, recorded metadata, content ids.

use wasmswap_core::{ArtifactKind, ContentId, LoadError, RuntimeConfig, WasiVersion};

use crate::runtime;

#[test]
fn component_metadata_is_recorded() {
    let bytes = test_programs::bytes(test_programs::TYPES_COMPONENT);
    let a = runtime().load(&bytes).unwrap();
    let info = a.info();
    assert_eq!(info.kind, ArtifactKind::Component);
    assert_eq!(info.wasi, Some(WasiVersion::P2));
    assert_eq!(info.id, ContentId::of(&bytes));
    assert_eq!(info.size_bytes, bytes.len());
    assert!(
        info.imports.iter().all(|i| i.starts_with("wasi:")),
        "{:?}",
        info.imports
    );
    let sig = |name: &str| {
        info.exports
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.signature.clone())
    };
    assert_eq!(sig("add-u8").as_deref(), Some("func(a: u8, b: u8) -> u8"));
    assert_eq!(
        sig("checked-div").as_deref(),
        Some("func(a: s32, b: s32) -> result<s32, string>")
    );
    assert_eq!(
        sig("wasmswap:guests/api@0.1.0#echo").as_deref(),
        Some("func(s: string) -> string")
    );
    let wit = info.wit.as_deref().expect("component world decoded");
    assert!(
        wit.contains("export add-u8: func(a: u8, b: u8) -> u8;"),
        "{wit}"
    );
    assert!(wit.contains("record point"), "{wit}");
}

#[test]
fn core_module_metadata_is_recorded() {
    let a = runtime()
        .load(&test_programs::bytes(test_programs::NUMERIC_MODULE))
        .unwrap();
    let info = a.info();
    assert_eq!(info.kind, ArtifactKind::Module);
    assert_eq!(info.wasi, Some(WasiVersion::P1));
    assert!(info.wit.is_none());
    assert!(
        info.imports
            .iter()
            .all(|i| i.starts_with("wasi_snapshot_preview1::"))
    );
    let add = info.exports.iter().find(|e| e.name == "add").unwrap();
    assert_eq!(add.signature, "(i32, i32) -> (i32)");
    let hc = info
        .exports
        .iter()
        .find(|e| e.name == "health_check")
        .unwrap();
    assert_eq!(hc.signature, "() -> (i32)");
}

#[test]
fn malformed_inputs_get_typed_errors() {
    let rt = runtime();
    let err = |bytes: &[u8]| match rt.load(bytes).unwrap_err() {
        wasmswap_core::Error::Load(e) => e,
        other => panic!("expected a load error, got {other:?}"),
    };
    assert_eq!(err(b"hello world"), LoadError::BadMagic);
    assert_eq!(
        err(b"\0asm\x0d\0\x02\0"),
        LoadError::UnsupportedVersion {
            version: 0xd,
            layer: 2
        }
    );
    // A real guest cut in half: invalid, with the offset of the problem.
    let bytes = test_programs::bytes(test_programs::NUMERIC_MODULE);
    match err(&bytes[..bytes.len() / 2]) {
        LoadError::Invalid { offset, message } => {
            assert!(offset <= bytes.len() / 2, "offset {offset}");
            assert!(!message.is_empty());
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    // One flipped byte inside the code section.
    let mut bad = test_programs::wat("add");
    let n = bad.len();
    bad[n - 3] = 0xff;
    assert!(matches!(err(&bad), LoadError::Invalid { .. }));
}

#[test]
fn huge_table_is_refused_before_allocation() {
    match runtime()
        .load(&test_programs::wat("huge-table"))
        .unwrap_err()
    {
        wasmswap_core::Error::Load(LoadError::TableTooLarge { declared, limit }) => {
            assert_eq!(declared, 100_000_000);
            assert_eq!(limit, 100_000);
        }
        other => panic!("expected TableTooLarge, got {other:?}"),
    }
}

#[test]
fn imports_outside_capabilities_are_named() {
    let bytes =
        wat::parse_str(r#"(module (import "env" "open_socket" (func (result i32))))"#).unwrap();
    let e = runtime().load(&bytes).unwrap_err();
    assert_eq!(
        e.to_string(),
        "import `env::open_socket` is outside the allowed capability set"
    );

    // A narrower capability set refuses WASI filesystem access in a component.
    let rt = RuntimeConfig::new()
        .allowed_imports(["wasi:cli/", "wasi:io/", "wasi:clocks/", "wasi:random/"])
        .build()
        .unwrap();
    let e = rt
        .load(&test_programs::bytes(
            test_programs::SANDBOX_PROBE_COMPONENT,
        ))
        .unwrap_err();
    assert!(
        matches!(&e, wasmswap_core::Error::Load(LoadError::DisallowedImport { import }) if import.starts_with("wasi:filesystem/")),
        "{e}"
    );
}

#[test]
fn oversized_binary_is_refused() {
    let rt = RuntimeConfig::new().max_module_bytes(1024).build().unwrap();
    let bytes = test_programs::bytes(test_programs::TYPES_COMPONENT);
    match rt.load(&bytes).unwrap_err() {
        wasmswap_core::Error::Load(LoadError::TooLarge { size, limit }) => {
            assert_eq!((size, limit), (bytes.len(), 1024));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // The default limit is 50 MiB, checked before parsing anything.
    let huge = vec![0u8; 50 * 1024 * 1024 + 1];
    assert!(matches!(
        runtime().load(&huge).unwrap_err(),
        wasmswap_core::Error::Load(LoadError::TooLarge {
            limit: 52_428_800,
            ..
        })
    ));
}

#[test]
fn disallowed_proposal_is_refused() {
    let bytes =
        wat::parse_str("(module (func (export \"f\") (result i32) i32.const 1 return_call 0))")
            .unwrap();
    match runtime().load(&bytes).unwrap_err() {
        wasmswap_core::Error::Load(LoadError::DisallowedProposal { message, .. }) => {
            assert!(message.contains("tail call"), "{message}")
        }
        other => panic!("expected DisallowedProposal, got {other:?}"),
    }
    let rt = RuntimeConfig::new().simd(false).build().unwrap();
    let simd = wat::parse_str("(module (func (result v128) v128.const i64x2 0 0))").unwrap();
    assert!(matches!(
        rt.load(&simd).unwrap_err(),
        wasmswap_core::Error::Load(LoadError::DisallowedProposal { .. })
    ));
}

#[test]
fn compile_is_bounded_in_time() {
    // A tiny timeout makes even a real component's compile too slow.
    let rt = RuntimeConfig::new()
        .compile_timeout(std::time::Duration::from_micros(1))
        .build()
        .unwrap();
    let e = rt
        .load(&test_programs::bytes(test_programs::TYPES_COMPONENT))
        .unwrap_err();
    assert!(
        matches!(e, wasmswap_core::Error::Load(LoadError::CompileTimeout(_))),
        "{e}"
    );
}

#[test]
fn same_bytes_share_one_artifact() {
    let rt = wasmswap_core::Runtime::new().unwrap();
    let bytes = test_programs::wat("add");
    let (a, s1) = rt.load_traced(&bytes).unwrap();
    let (b, s2) = rt.load_traced(&bytes).unwrap();
    assert_eq!(s1, wasmswap_core::LoadSource::Compiled);
    assert_eq!(s2, wasmswap_core::LoadSource::Memory);
    assert_eq!(a.id(), b.id());
    assert_eq!(rt.loaded_count(), 1);
    drop((a, b));
    assert_eq!(rt.loaded_count(), 0);
}
