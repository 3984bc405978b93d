//! The text and JSON reports are part of the interface: pinned here.

use serde_json::json;
use wasmswap_core::wit::{self, Diff};

use super::pkg;

fn sample() -> Diff {
    let old = pkg(
        "package acme:shop@1.0.0;\ninterface orders {\n  record order { id: u64, qty: u32 }\n  place: func(o: order) -> u64;\n  cancel: func(id: u64);\n}\n",
    );
    let new = pkg(
        "package acme:shop@2.0.0;\ninterface orders {\n  record order { id: u64, qty: u32, note: option<string> }\n  place: func(o: order) -> u64;\n  refund: func(id: u64) -> bool;\n}\n",
    );
    wit::diff_packages(&old, &new)
}

#[test]
fn text_report_is_stable() {
    let expected = "\
acme:shop@1.0.0 -> acme:shop@2.0.0
3 changes; callers: BREAKING (1 change); implementers: BREAKING (2 changes)
  [callers BREAKING, implementers ok] acme:shop/orders@1.0.0#cancel: function removed: func(id: u64)
      callers of the old version call it
  [callers ok, implementers BREAKING, ABI] acme:shop/orders@2.0.0#order.note: field added: option<string>
      old implementations refuse what new callers send: field `note` is unknown
  [callers ok, implementers BREAKING] acme:shop/orders@2.0.0#refund: function added: func(id: u64) -> bool
      implementations of the old version do not provide it
";
    assert_eq!(sample().text(), expected);
    let same = wit::diff_packages(
        &pkg("package a:b;\ninterface i { }\n"),
        &pkg("package a:b;\ninterface i { }\n"),
    );
    assert_eq!(same.to_string(), "a:b -> a:b\nno changes\n");
}

#[test]
fn json_report_is_stable_and_round_trips() {
    let diff = sample();
    let value = serde_json::to_value(&diff).unwrap();
    assert_eq!(
        value,
        json!({
            "old": "acme:shop@1.0.0",
            "new": "acme:shop@2.0.0",
            "changes": [
                {
                    "path": "acme:shop/orders@1.0.0#cancel",
                    "change": "function-removed",
                    "signature": "func(id: u64)",
                    "callers": "breaking",
                    "implementers": "compatible",
                    "abiBreaking": false,
                    "reason": "callers of the old version call it"
                },
                {
                    "path": "acme:shop/orders@2.0.0#order.note",
                    "change": "field-added",
                    "type": "option<string>",
                    "callers": "compatible",
                    "implementers": "breaking",
                    "abiBreaking": true,
                    "reason": "old implementations refuse what new callers send: field `note` is unknown"
                },
                {
                    "path": "acme:shop/orders@2.0.0#refund",
                    "change": "function-added",
                    "signature": "func(id: u64) -> bool",
                    "callers": "compatible",
                    "implementers": "breaking",
                    "abiBreaking": false,
                    "reason": "implementations of the old version do not provide it"
                }
            ]
        })
    );
    let back: Diff = serde_json::from_value(value).unwrap();
    assert_eq!(back, diff);
}

#[test]
fn semver_and_conformance_serialize_in_camel_case() {
    let diff = sample();
    let gate = wit::check_semver(
        &"1.0.0".parse().unwrap(),
        &"2.0.0".parse().unwrap(),
        &diff,
        Default::default(),
    );
    assert_eq!(
        serde_json::to_value(&gate).unwrap(),
        json!({
            "old": "1.0.0", "new": "2.0.0", "bump": "major", "required": "major", "allowed": true,
            "reason": "1 breaking change(s), and a major bump allows that"
        })
    );
}
