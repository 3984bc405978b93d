//! WIT text in: parse it, and if it parses, diff it with itself (and with a
//! second, independent parse) — both diffs must be empty, and the reports
//! must render and round-trip. Never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmswap_core::wit::{self, Compatibility, Diff, WitPackage};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(a) = WitPackage::parse("fuzz.wit", text) else {
        return;
    };
    let b = WitPackage::parse("fuzz.wit", text).expect("the same text parses twice");
    for diff in [wit::diff_packages(&a, &a), wit::diff_packages(&a, &b)] {
        assert!(diff.is_empty(), "{diff}");
        let json = serde_json::to_string(&diff).expect("serializes");
        let back: Diff = serde_json::from_str(&json).expect("round-trips");
        assert_eq!(back, diff);
        let _ = diff.text();
    }
    for name in a.world_names() {
        let diff = wit::diff_worlds(&a.world(&name).unwrap(), &b.world(&name).unwrap());
        assert!(diff.is_empty(), "{diff}");
    }
    for name in a.interface_names() {
        let diff = wit::diff_interfaces(&a.interface(&name).unwrap(), &b.interface(&name).unwrap());
        assert!(diff.is_empty(), "{diff}");
    }
    if let Some(v) = a.version() {
        let diff = wit::diff_packages(&a, &b);
        assert!(wit::check_semver(v, v, &diff, Compatibility::Both).allowed);
    }
});
