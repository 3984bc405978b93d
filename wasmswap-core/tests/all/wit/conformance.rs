//! Conformance: does a component implement a registered interface, and can
//! a host satisfy its imports? Against real components built from source.

use wasmswap_core::wit::{self, HostInterfaces, WitPackage, WitWorld};

use super::{pkg, wasi_dir};

fn types_component() -> WitWorld {
    WitWorld::from_component(&test_programs::bytes(test_programs::TYPES_COMPONENT)).unwrap()
}

/// The guest's own WIT, as a registry would hold it.
fn registered_api(version: &str, extra: &str) -> WitPackage {
    pkg(&format!(
        "package wasmswap:guests@{version};\ninterface api {{\n  echo: func(s: string) -> string;\n  {extra}\n}}\n"
    ))
}

#[test]
fn a_component_implements_its_registered_interface() {
    let contract = registered_api("0.1.0", "").interface("api").unwrap();
    let c = wit::check_exports(&types_component(), &contract);
    assert!(c.satisfied, "{c:?}");
    // A compatible later patch on the same track is still implemented
    // when it only drops nothing.
    let c = wit::check_exports(
        &types_component(),
        &registered_api("0.1.3", "").interface("api").unwrap(),
    );
    assert!(c.satisfied, "{c:?}");
}

#[test]
fn a_missing_function_or_wrong_type_is_named() {
    let contract = registered_api("0.1.0", "shout: func(s: string) -> string;")
        .interface("api")
        .unwrap();
    let c = wit::check_exports(&types_component(), &contract);
    assert!(!c.satisfied);
    assert_eq!(c.problems.len(), 1, "{c:?}");
    assert_eq!(
        c.problems,
        [
            "wasmswap:guests/api@0.1.0#shout: the contract requires it but the component does not export it"
        ]
    );

    let retyped =
        pkg("package wasmswap:guests@0.1.0;\ninterface api { echo: func(s: u32) -> string; }\n");
    let c = wit::check_exports(&types_component(), &retyped.interface("api").unwrap());
    assert!(!c.satisfied);
    assert!(
        c.problems[0].contains("parameter `s` changed from u32 to string"),
        "{:?}",
        c.problems
    );
}

#[test]
fn an_interface_the_component_does_not_export_or_another_major() {
    let other =
        pkg("package wasmswap:other@0.1.0;\ninterface api { echo: func(s: string) -> string; }\n");
    let c = wit::check_exports(&types_component(), &other.interface("api").unwrap());
    assert!(!c.satisfied);
    assert!(
        c.problems[0]
            .starts_with("the component does not export wasmswap:other/api@0.1.0 (it exports: ")
            && c.problems[0].contains("wasmswap:guests/api@0.1.0")
            && c.problems[0].contains("add-u8"),
        "{}",
        c.problems[0]
    );
    let c = wit::check_exports(
        &types_component(),
        &registered_api("0.2.0", "").interface("api").unwrap(),
    );
    assert!(!c.satisfied);
    assert!(
        c.problems[0].contains("not semver-compatible"),
        "{:?}",
        c.problems
    );
}

#[test]
fn wasmswap_satisfies_the_imports_of_every_guest_component() {
    let host = HostInterfaces::wasmswap();
    assert!(
        host.names()
            .iter()
            .any(|n| n == "wasi:http/outgoing-handler@0.2.12"),
        "{host:?}"
    );
    for path in [
        test_programs::TYPES_COMPONENT,
        test_programs::SANDBOX_PROBE_COMPONENT,
        test_programs::HTTP_HELLO_V1_COMPONENT,
        test_programs::HTTP_HELLO_V2_COMPONENT,
    ] {
        let world = WitWorld::from_component(&test_programs::bytes(path)).unwrap();
        let c = wit::check_imports(&world, host);
        assert!(c.satisfied, "{path}: {:?}", c.problems);
    }
}

#[test]
fn a_bare_proxy_host_cannot_run_a_rust_wasip2_guest() {
    // wasi:http/proxy@0.2.0 imports stdio but not wasi:cli/environment,
    // which Rust's std imports: the reason `wasmtime serve` needs `-S cli`.
    let old = WitPackage::from_path(wasi_dir("0.2.0")).unwrap();
    let host = HostInterfaces::empty().with_world_imports(&old.world("proxy").unwrap());
    let world = WitWorld::from_component(&test_programs::bytes(
        test_programs::HTTP_HELLO_V1_COMPONENT,
    ))
    .unwrap();
    let c = wit::check_imports(&world, &host);
    assert!(!c.satisfied);
    assert!(
        c.problems
            .iter()
            .any(|p| p.starts_with("imports wasi:cli/environment@")
                && p.ends_with("which the host does not provide")),
        "{:?}",
        c.problems
    );
    let none = wit::check_imports(&world, &HostInterfaces::empty());
    assert!(none.problems.len() > c.problems.len());
}

/// Builds a component from WIT alone (a dummy core module with the world's
/// imports and exports), as a guest toolchain would.
fn component_for(wit: &str) -> Vec<u8> {
    let mut resolve = wit_parser::Resolve::new();
    resolve.push_path(wasi_dir("0.2.12")).unwrap();
    let pkg = resolve.push_str("app.wit", wit).unwrap();
    let world = resolve.select_world(&[pkg], None).unwrap();
    let mut module =
        wit_component::dummy_module(&resolve, world, wit_parser::ManglingAndAbi::Standard32);
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap();
    wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

#[test]
fn an_import_newer_than_the_host_is_refused_with_the_missing_function() {
    let bytes = component_for(
        "package t:app;\nworld app {\n  import wasi:cli/exit@0.2.12;\n  export run: func();\n}\n",
    );
    let world = WitWorld::from_component(&bytes).unwrap();
    // wasmswap links 0.2.12: satisfied.
    assert!(wit::check_imports(&world, HostInterfaces::wasmswap()).satisfied);
    // A 0.2.0 host has `exit` but not `exit-with-code`.
    let old = WitPackage::from_path(wasi_dir("0.2.0")).unwrap();
    let host = HostInterfaces::empty().with_world_imports(
        &old.dependency("wasi:cli")
            .unwrap()
            .world("command")
            .unwrap(),
    );
    let c = wit::check_imports(&world, &host);
    assert!(!c.satisfied);
    assert_eq!(c.problems.len(), 1, "{:?}", c.problems);
    assert_eq!(
        c.problems,
        [
            "wasi:cli/exit@0.2.12#exit-with-code: the component calls it but the host's wasi:cli/exit@0.2.0 lacks it"
        ]
    );
    // A directly imported function has no host.
    let bytes = component_for(
        "package t:app;\nworld app {\n  import log: func(msg: string);\n  export run: func();\n}\n",
    );
    let c = wit::check_imports(
        &WitWorld::from_component(&bytes).unwrap(),
        HostInterfaces::wasmswap(),
    );
    assert_eq!(
        c.problems,
        ["imports the function `log` directly, which no host provides"]
    );
}

#[test]
fn two_builds_of_one_component_diff_as_worlds() {
    let v1 =
        component_for("package t:app@1.0.0;\nworld app {\n  export run: func(n: u8) -> u32;\n}\n");
    let v2 = component_for(
        "package t:app@1.1.0;\nworld app {\n  export run: func(n: u32) -> u32;\n  export stop: func();\n}\n",
    );
    let diff = wit::diff_worlds(
        &WitWorld::from_component(&v1).unwrap(),
        &WitWorld::from_component(&v2).unwrap(),
    );
    assert!(!diff.breaks_callers(), "{diff}");
    assert!(diff.breaks_implementers(), "{diff}");
    assert_eq!(diff.changes.len(), 2, "{diff}");
}

const FILES: &str = "package t:app@1.0.0;
interface files {
  resource file {
    constructor(path: string);
    read: func(n: u32) -> list<u8>;
    open: static func(path: string) -> file;
  }
  get: func() -> file;
  pair: func() -> tuple<file, file>;
}
world app { export files; }
";

#[test]
fn a_decoded_component_matches_the_wit_it_was_built_from() {
    // Decoded components spell an owned handle `own<file>`; parsed WIT
    // spells it `file`. They are the same type.
    let bytes = component_for(FILES);
    let decoded = WitWorld::from_component(&bytes).unwrap();
    let parsed = pkg(FILES);
    let diff = wit::diff_worlds(&parsed.world("app").unwrap(), &decoded);
    assert!(diff.is_empty(), "{diff}");
    let c = wit::check_exports(&decoded, &parsed.interface("files").unwrap());
    assert!(c.satisfied, "{:?}", c.problems);
}

#[test]
fn an_import_whose_abi_changed_does_not_link() {
    let bytes = component_for(
        "package t:app;\nworld app { import t:lib/log@1.0.0; export run: func(); }\npackage t:lib@1.0.0 { interface log { write: func(level: u8); } }\n",
    );
    let world = WitWorld::from_component(&bytes).unwrap();
    // The host's 1.1.0 widened the parameter: fine for a JSON caller, but
    // the component was compiled against u8 and would not link.
    let host_pkg = pkg("package t:lib@1.1.0;\ninterface log { write: func(level: u32); }\n");
    let host = HostInterfaces::default().with_interface(&host_pkg.interface("log").unwrap());
    let c = wit::check_imports(&world, &host);
    assert_eq!(
        c.problems,
        [
            "t:lib/log@1.1.0#write: parameter `level` changed from u8 to u32 in the host's t:lib/log@1.1.0, which changes the ABI and fails to link"
        ]
    );
    let same =
        pkg("package t:lib@1.1.0;\ninterface log { write: func(level: u8); flush: func(); }\n");
    let host = HostInterfaces::default().with_interface(&same.interface("log").unwrap());
    assert!(wit::check_imports(&world, &host).satisfied);
}
