//! Parsing WIT text, files and directories, decoding component worlds, and
//! errors that point at the file, line and column.

use wasmswap_core::wit::{WitPackage, WitWorld};

use super::{pkg, wasi_dir};

#[test]
fn single_file_with_nested_dependency_and_use() {
    let p = pkg(r#"
        package acme:app@1.2.0;

        interface api {
            use acme:shared/types@0.1.0.{point};
            move: func(p: point, dx: s32) -> point;
        }

        world app { export api; }

        package acme:shared@0.1.0 {
            interface types { record point { x: s32, y: s32 } }
        }
    "#);
    assert_eq!(p.name(), "acme:app@1.2.0");
    assert_eq!(p.version().map(|v| v.to_string()).as_deref(), Some("1.2.0"));
    assert_eq!(p.interface_names(), ["api"]);
    assert_eq!(p.world_names(), ["app"]);
    assert_eq!(p.interface("api").unwrap().name(), "acme:app/api@1.2.0");
    assert_eq!(p.world("app").unwrap().name(), "acme:app/app@1.2.0");
    let dep = p.dependency("acme:shared").unwrap();
    assert_eq!(dep.name(), "acme:shared@0.1.0");
    let text = p.to_wit().unwrap();
    assert!(
        text.contains("move: func(p: point, dx: s32) -> point;"),
        "{text}"
    );
}

#[test]
fn multi_file_package_with_dependency_package() {
    let types = "package acme:app@1.0.0;\ninterface types { record order { id: u64 } }\n";
    let api = "package acme:app@1.0.0;\ninterface api {\n  use types.{order};\n  use acme:log/sink@2.0.0.{level};\n  place: func(o: order, l: level);\n}\n";
    let dep = "package acme:log@2.0.0;\ninterface sink { enum level { info, warn } }\n";
    let p = WitPackage::parse_files(
        &[("types.wit", types), ("api.wit", api)],
        &[&[("log.wit", dep)]],
    )
    .unwrap_or_else(|e| panic!("{}", e.rendered));
    assert_eq!(p.interface_names().len(), 2);
    assert_eq!(
        p.dependency("acme:log@2.0.0").unwrap().interface_names(),
        ["sink"]
    );
}

#[test]
fn directory_with_deps_parses_every_wasi_0_2_0_package() {
    let p = WitPackage::from_path(wasi_dir("0.2.0")).unwrap_or_else(|e| panic!("{}", e.rendered));
    assert_eq!(p.name(), "wasi:http@0.2.0");
    assert_eq!(
        p.interface_names(),
        ["types", "incoming-handler", "outgoing-handler"]
    );
    for dep in super::WASI_DEPS {
        let d = p.dependency(dep).unwrap();
        assert_eq!(d.version().unwrap().to_string(), "0.2.0", "{dep}");
        assert!(!d.interface_names().is_empty(), "{dep}");
    }
}

#[test]
fn syntax_error_names_file_line_and_column() {
    let text = "package a:b;\ninterface i {\n  f: func(x: u32) -> ;\n}\n";
    let e = WitPackage::parse("broken.wit", text).unwrap_err();
    let at = e.location.as_ref().expect("a location");
    assert_eq!(
        (at.file.as_str(), at.line, at.column),
        ("broken.wit", 3, 22),
        "{e}"
    );
    assert!(e.to_string().starts_with("broken.wit:3:22: "), "{e}");
    assert!(
        e.rendered.contains("f: func(x: u32) -> ;"),
        "the snippet shows the line: {}",
        e.rendered
    );
}

#[test]
fn unknown_type_names_the_type_and_where_it_is_used() {
    let text = "package a:b;\n\ninterface i {\n    f: func(x: no-such-type);\n}\n";
    let e = WitPackage::parse("api.wit", text).unwrap_err();
    assert!(e.message.contains("no-such-type"), "{e}");
    let at = e.location.unwrap();
    assert_eq!((at.line, at.column), (4, 16));
}

#[test]
fn error_in_a_second_file_points_at_that_file() {
    let good = "package a:b;\ninterface one { f: func(); }\n";
    let bad = "package a:b;\ninterface two {\n  g: func() -> list<;\n}\n";
    let e = WitPackage::parse_files(&[("one.wit", good), ("two.wit", bad)], &[]).unwrap_err();
    let at = e.location.unwrap();
    assert_eq!(
        (at.file.as_str(), at.line),
        ("two.wit", 3),
        "{}",
        e.rendered
    );
}

#[test]
fn missing_dependency_is_a_resolve_error_with_location() {
    let text = "package a:b;\ninterface i {\n  use x:y/z.{t};\n  f: func(a: t);\n}\n";
    let e = WitPackage::parse("dep.wit", text).unwrap_err();
    assert!(e.message.contains("x:y"), "{e}");
    let at = e.location.unwrap();
    assert_eq!((at.file.as_str(), at.line), ("dep.wit", 3));
}

#[test]
fn unknown_interface_or_world_lists_what_exists() {
    let p = pkg("package a:b;\ninterface one { }\nworld w { }\n");
    let e = p.interface("two").unwrap_err();
    assert!(
        e.message.contains("has no interface `two`") && e.message.contains("one"),
        "{e}"
    );
    let e = p.world("x").unwrap_err();
    assert!(
        e.message.contains("has no world `x`") && e.message.contains('w'),
        "{e}"
    );
}

#[test]
fn a_components_world_is_decoded_from_its_binary() {
    let w =
        WitWorld::from_component(&test_programs::bytes(test_programs::TYPES_COMPONENT)).unwrap();
    let text = w.to_wit().unwrap();
    for item in [
        "export wasmswap:guests/api@0.1.0;",
        "export add-u8: func(a: u8, b: u8) -> u8;",
        "export checked-div: func(a: s32, b: s32) -> result<s32, string>;",
        "record point {",
    ] {
        assert!(text.contains(item), "missing {item:?} in\n{text}");
    }
}

#[test]
fn a_core_module_or_garbage_has_no_world() {
    let core = test_programs::bytes(test_programs::NUMERIC_MODULE);
    let e = WitWorld::from_component(&core).unwrap_err();
    assert!(e.message.contains("a core module"), "{e}");
    let e = WitWorld::from_component(b"not wasm at all").unwrap_err();
    assert!(e.message.contains("not WebAssembly"), "{e}");
    // A component header with a truncated body.
    let mut truncated = test_programs::bytes(test_programs::TYPES_COMPONENT);
    truncated.truncate(100);
    let e = WitWorld::from_component(&truncated).unwrap_err();
    assert!(e.message.contains("cannot decode"), "{e}");
}

/// Found by the `wit_diff` fuzz target: wit-parser 0.254 panics on the
/// empty doc comment `/**/`. It must parse (it is only a comment), and
/// locations after it on the same line must not move.
#[test]
fn an_empty_doc_comment_does_not_crash_the_parser() {
    let p = pkg("package a:b;\n/**/ interface i { f: func(); }\n/**/\nworld w { export i; }\n");
    assert_eq!(p.interface_names(), ["i"]);
    let e = WitPackage::parse(
        "x.wit",
        "package a:b;\n/**/ interface i { f: func(x: nope); }\n",
    )
    .unwrap_err();
    let at = e.location.unwrap();
    assert_eq!((at.line, at.column), (2, 31), "{}", e.rendered);
}

#[test]
fn from_path_reads_a_single_file_and_refuses_an_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.wit");
    std::fs::write(&file, "package a:b@1.0.0;\ninterface i { f: func(); }\n").unwrap();
    assert_eq!(WitPackage::from_path(&file).unwrap().name(), "a:b@1.0.0");
    let empty = tempfile::tempdir().unwrap();
    let e = WitPackage::from_path(empty.path()).unwrap_err();
    assert!(e.message.starts_with("no *.wit files in "), "{e}");
    let e = WitPackage::from_path(dir.path().join("missing.wit")).unwrap_err();
    assert!(e.message.starts_with("cannot read "), "{e}");
}

/// Found by the `wit_diff` fuzz target: wit-parser accepts a variant that
/// names a case twice, which then diffs as changed against itself.
#[test]
fn duplicate_member_names_are_refused_with_their_location() {
    let text = "package a:b;\ninterface i {\n  variant v { x(u32), y, x(f64) }\n}\n";
    let e = WitPackage::parse("dup.wit", text).unwrap_err();
    assert_eq!(e.message, "variant `v` has two members named `x`");
    let at = e.location.unwrap();
    assert_eq!((at.file.as_str(), at.line, at.column), ("dup.wit", 3, 26));
    for body in [
        "record r { a: u32, a: u32 }",
        "enum e { a, a }",
        "flags f { a, a }",
    ] {
        let e = WitPackage::parse(
            "dup.wit",
            &format!("package a:b;\ninterface i {{ {body} }}\n"),
        )
        .unwrap_err();
        assert!(e.message.contains("two members named `a`"), "{body}: {e}");
    }
    let e = WitPackage::parse(
        "dup.wit",
        "package a:b;\ninterface i { f: func(a: u32, a: u32); }\n",
    )
    .unwrap_err();
    assert!(e.location.is_some(), "{e}");
}
