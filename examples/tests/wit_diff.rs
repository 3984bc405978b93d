//! The `wit_diff` example against the vendored WASI releases and real
//! guest components.

use wasmswap_examples::wit_diff::run;

fn wasi(release: &str) -> String {
    let core = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasmswap-core");
    let dir = match release {
        "0.2.0" => core.join("tests/wit/wasi-0.2.0"),
        _ => core.join("wit/wasi-0.2.12"),
    };
    dir.display().to_string()
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[test]
fn wasi_http_upgrade_passes_for_callers_and_fails_for_both() {
    let (text, pass) = run(args(&[&wasi("0.2.0"), &wasi("0.2.12")])).unwrap();
    assert!(pass, "{text}");
    assert!(
        text.starts_with("wasi:http@0.2.0 -> wasi:http@0.2.12\n"),
        "{text}"
    );
    assert!(
        text.ends_with(
            "semver 0.2.0 -> 0.2.12: ok (only compatible changes, and a patch bump allows that)\n"
        ),
        "{text}"
    );
    // The proxy world: hosts of 0.2.0 lack nothing non-exempt either.
    let (_, pass) = run(args(&[
        &wasi("0.2.0"),
        &wasi("0.2.12"),
        "--world",
        "proxy",
        "--policy",
        "both",
    ]))
    .unwrap();
    assert!(pass);
}

#[test]
fn json_output_carries_the_diff_and_the_gate() {
    let (out, _) = run(args(&[&wasi("0.2.0"), &wasi("0.2.12"), "--json"])).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["diff"]["old"], "wasi:http@0.2.0");
    assert_eq!(v["semver"]["allowed"], true);
    assert!(
        v["diff"]["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["path"] == "wasi:http/types@0.2.12#fields.get")
    );
}

#[test]
fn two_different_components_break_callers() {
    let (text, pass) = run(args(&[
        test_programs::HTTP_HELLO_V1_COMPONENT,
        test_programs::TYPES_COMPONENT,
    ]))
    .unwrap();
    assert!(!pass, "{text}");
    assert!(text.contains("export removed"), "{text}");
    let (text, pass) = run(args(&[
        test_programs::TYPES_COMPONENT,
        test_programs::TYPES_COMPONENT,
    ]))
    .unwrap();
    assert!(pass && text.ends_with("no changes\n"), "{text}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let e = run(args(&["/nonexistent.wit", &wasi("0.2.0")])).unwrap_err();
    assert!(format!("{e:#}").contains("nonexistent"), "{e:#}");
    let e = run(args(&[&wasi("0.2.0"), test_programs::TYPES_COMPONENT])).unwrap_err();
    assert!(e.to_string().contains("not one of each"), "{e}");
    let e = run(args(&[&wasi("0.2.0"), &wasi("0.2.12"), "--policy", "lax"])).unwrap_err();
    assert!(e.to_string().contains("unknown policy \"lax\""), "{e}");
    let e = run(args(&["only-one"])).unwrap_err();
    assert!(e.to_string().starts_with("usage:"), "{e}");
}
