//! The semver gate: does the bump between two versions permit the changes?

use semver::Version;
use wasmswap_core::wit::{self, Bump, Compatibility};

use super::pkg;

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

fn iface(version: &str, body: &str) -> wit::WitPackage {
    pkg(&format!(
        "package t:c@{version};\ninterface api {{ {body} }}\n"
    ))
}

/// (old, new, change: none | additive | breaking, allowed, required)
const TABLE: &[(&str, &str, &str, bool, Bump)] = &[
    // 1.x: breaking needs major, additive needs minor.
    ("1.2.3", "2.0.0", "breaking", true, Bump::Major),
    ("1.2.3", "1.3.0", "breaking", false, Bump::Major),
    ("1.2.3", "1.2.4", "breaking", false, Bump::Major),
    ("1.2.3", "1.3.0", "additive", true, Bump::Minor),
    ("1.2.3", "1.2.4", "additive", false, Bump::Minor),
    ("1.2.3", "1.2.4", "none", true, Bump::Same),
    ("1.2.3", "1.2.3", "none", true, Bump::Same),
    // 0.y: the minor acts as the major.
    ("0.2.0", "0.3.0", "breaking", true, Bump::Minor),
    ("0.2.0", "0.2.1", "breaking", false, Bump::Minor),
    ("0.2.0", "0.2.1", "additive", true, Bump::Patch),
    ("0.2.0", "1.0.0", "breaking", true, Bump::Minor),
    // 0.0.z: every release may break.
    ("0.0.1", "0.0.2", "breaking", true, Bump::Patch),
    // Same version or a lower one with changes: refused.
    ("1.0.0", "1.0.0", "additive", false, Bump::Minor),
    ("2.0.0", "1.9.0", "none", false, Bump::Same),
    // A pre-release promises nothing, to or from it.
    ("1.0.0", "1.0.1-rc.1", "breaking", true, Bump::Major),
    ("2.0.0-rc.1", "2.0.0", "breaking", true, Bump::Major),
];

#[test]
fn bumps_are_judged_by_semver_rules() {
    let base = iface("1.0.0", "f: func(a: u32);");
    let changed = |kind: &str| match kind {
        "none" => iface("1.0.0", "f: func(a: u32);"),
        "additive" => iface("1.0.0", "f: func(a: u32); g: func();"),
        "breaking" => iface("1.0.0", "f: func(a: string);"),
        _ => unreachable!(),
    };
    for &(old, new, kind, allowed, required) in TABLE {
        let diff = wit::diff_packages(&base, &changed(kind));
        let gate = wit::check_semver(&v(old), &v(new), &diff, Compatibility::Callers);
        assert_eq!(
            gate.allowed, allowed,
            "{old} -> {new} ({kind}): {}",
            gate.reason
        );
        assert_eq!(gate.required, required, "{old} -> {new} ({kind})");
    }
}

#[test]
fn the_policy_chooses_whose_breakage_counts() {
    // Adding a function breaks implementers only.
    let diff = wit::diff_packages(
        &iface("1.0.0", "f: func();"),
        &iface("1.1.0", "f: func(); g: func();"),
    );
    let check = |p| wit::check_semver(&v("1.0.0"), &v("1.1.0"), &diff, p);
    assert!(check(Compatibility::Callers).allowed);
    assert!(!check(Compatibility::Implementers).allowed);
    assert!(!check(Compatibility::Both).allowed);
    assert!(check(Compatibility::NoPromise).allowed);
    let refused = check(Compatibility::Implementers);
    assert_eq!(refused.required, Bump::Major);
    assert_eq!(refused.bump, Bump::Minor);
    assert_eq!(
        refused.reason,
        "1 breaking change(s), e.g. t:c/api@1.1.0#g (function added: func()) need at least a major bump from 1.0.0, but 1.1.0 is a minor bump"
    );
}
