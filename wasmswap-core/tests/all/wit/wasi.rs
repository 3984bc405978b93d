//! The real WASI packages, as vendored by wasmtime-wasi-http at 0.2.0
//! (wasmtime 17) and 0.2.12 (wasmtime 48): both parse, and the diff between
//! them says what WASI's own release notes say.

use wasmswap_core::wit::{self, Compatibility, Verdict, WitPackage};

use super::wasi_dir;

fn releases() -> (WitPackage, WitPackage) {
    let old = WitPackage::from_path(wasi_dir("0.2.0")).unwrap_or_else(|e| panic!("{}", e.rendered));
    let new = wit::wasi_0_2_12().unwrap_or_else(|e| panic!("{}", e.rendered));
    // The embedded copy and the directory on disk are the same WIT.
    let disk =
        WitPackage::from_path(wasi_dir("0.2.12")).unwrap_or_else(|e| panic!("{}", e.rendered));
    assert!(wit::diff_packages(&disk, &new).is_empty());
    (old, new)
}

#[test]
fn every_wasi_package_parses_at_both_releases() {
    let (old, new) = releases();
    for (p, v) in [(&old, "0.2.0"), (&new, "0.2.12")] {
        assert_eq!(p.name(), format!("wasi:http@{v}"));
        for dep in super::WASI_DEPS {
            let d = p.dependency(dep).unwrap();
            assert_eq!(d.name(), format!("{dep}@{v}"));
        }
    }
    assert_eq!(
        new.dependency("wasi:io").unwrap().interface_names(),
        ["error", "poll", "streams"]
    );
}

#[test]
fn wasi_http_0_2_0_to_0_2_12_is_compatible_both_ways() {
    let (old, new) = releases();
    let diff = wit::diff_packages(&old, &new);
    assert!(
        !diff.breaks_callers() && !diff.breaks_implementers(),
        "{diff}"
    );
    // `field-key` was renamed `field-name` in 0.2.1 and kept as a
    // deprecated alias: every `fields` method now names the new alias, and
    // both are strings, so nothing breaks and the ABI is unchanged.
    let dep = diff
        .at("wasi:http/types@0.2.12#field-key")
        .next()
        .expect("deprecation");
    assert_eq!(
        dep.kind,
        wit::ChangeKind::Deprecated {
            version: "0.2.2".into()
        }
    );
    let get = diff
        .at("wasi:http/types@0.2.12#fields.get")
        .next()
        .expect("fields.get changed");
    assert_eq!(
        get.kind,
        wit::ChangeKind::ParamTypeChanged {
            param: "name".into(),
            old: "field-key".into(),
            new: "field-name".into()
        }
    );
    assert_eq!(
        (get.callers, get.implementers, get.abi_breaking),
        (Verdict::Compatible, Verdict::Compatible, false)
    );
    // The informational-response method is gated @unstable: no promise.
    let info = diff
        .at("wasi:http/types@0.2.12#response-outparam.send-informational")
        .next()
        .unwrap();
    assert!(matches!(info.kind, wit::ChangeKind::FunctionAdded { .. }));
    assert!(
        info.reason
            .starts_with("exempt: @unstable(feature = informational-outbound-responses)"),
        "{}",
        info.reason
    );
    let gate = wit::check_semver(
        old.version().unwrap(),
        new.version().unwrap(),
        &diff,
        Compatibility::Both,
    );
    assert!(gate.allowed, "{gate:?}");
}

#[test]
fn wasi_cli_0_2_12_added_exit_with_code() {
    let (old, new) = releases();
    let (old, new) = (
        old.dependency("wasi:cli").unwrap(),
        new.dependency("wasi:cli").unwrap(),
    );
    let diff = wit::diff_packages(&old, &new);
    let exit = diff
        .at("wasi:cli/exit@0.2.12#exit-with-code")
        .next()
        .expect("exit-with-code");
    assert_eq!(
        (exit.callers, exit.implementers),
        (Verdict::Compatible, Verdict::Breaking)
    );
    assert!(!diff.breaks_callers(), "{diff}");
    // For callers, an addition fits a patch release below 1.0…
    let gate = wit::check_semver(
        old.version().unwrap(),
        new.version().unwrap(),
        &diff,
        Compatibility::Callers,
    );
    assert!(gate.allowed, "{gate:?}");
    // …but a host that promised its implementers stability would need 0.3.
    let gate = wit::check_semver(
        old.version().unwrap(),
        new.version().unwrap(),
        &diff,
        Compatibility::Both,
    );
    assert!(!gate.allowed);
    assert_eq!(gate.required, wit::Bump::Minor);
    assert!(gate.reason.contains("exit-with-code"), "{}", gate.reason);
    // Going back down removes it: old callers of 0.2.12 break.
    let back = wit::diff_packages(&new, &old);
    let exit = back
        .at("wasi:cli/exit@0.2.12#exit-with-code")
        .next()
        .expect("removal");
    assert_eq!(
        (exit.callers, exit.implementers),
        (Verdict::Breaking, Verdict::Compatible)
    );
}

#[test]
fn wasi_cli_command_world_diff_swaps_roles_for_imports() {
    let (old, new) = releases();
    let world = |p: &WitPackage| p.dependency("wasi:cli").unwrap().world("command").unwrap();
    let diff = wit::diff_worlds(&world(&old), &world(&new));
    // The command world imports wasi:cli/exit: a host (the world's caller)
    // built for 0.2.0 does not provide the new function; a component built
    // for 0.2.0 never calls it.
    let exit = diff
        .at("wasi:cli/exit@0.2.12#exit-with-code")
        .next()
        .expect("exit-with-code");
    assert_eq!(
        (exit.callers, exit.implementers),
        (Verdict::Breaking, Verdict::Compatible)
    );
    // The unstable timezone interface and network error codes are exempt.
    let exempt: Vec<_> = diff
        .changes
        .iter()
        .filter(|c| c.reason.starts_with("exempt:"))
        .map(|c| c.path.as_str())
        .collect();
    assert_eq!(
        exempt,
        [
            "wasi:cli/command@0.2.12#wasi:clocks/timezone",
            "wasi:sockets/network@0.2.12#error",
            "wasi:sockets/network@0.2.12#network-error-code",
        ],
        "{diff}"
    );
    assert_eq!(diff.changes.len(), 4, "{diff}");
}

#[test]
fn wasi_http_proxy_world_diff_covers_every_imported_package() {
    let (old, new) = releases();
    let diff = wit::diff_worlds(&old.world("proxy").unwrap(), &new.world("proxy").unwrap());
    assert_eq!(diff.old, "wasi:http/proxy@0.2.0");
    assert_eq!(diff.new, "wasi:http/proxy@0.2.12");
    assert!(
        !diff.breaks_callers() && !diff.breaks_implementers(),
        "{diff}"
    );
    // The same renamed alias, seen from the world: the types interface is
    // imported, so its methods are the host's to provide.
    assert!(
        diff.at("wasi:http/types@0.2.12#fields.set")
            .next()
            .is_some(),
        "{diff}"
    );
    for c in &diff.changes {
        assert!(
            c.path.starts_with("wasi:http/types@0.2.12#"),
            "unexpected change {c:?}"
        );
    }
}
