//! The interface registry: each version reviewed against the one before,
//! semver enforced, breaking changes held for approval.

use wasmswap_core::wit::{Compatibility, Registry, RegistryError, Status};

use super::pkg;

fn api(version: &str, body: &str) -> wasmswap_core::wit::WitPackage {
    pkg(&format!(
        "package acme:pay@{version};\ninterface api {{ {body} }}\n"
    ))
}

#[test]
fn versions_are_reviewed_against_their_predecessor() {
    let mut reg = Registry::new();
    let e = reg
        .register(
            &api("1.0.0", "charge: func(cents: u64) -> bool;"),
            "api",
            Compatibility::Callers,
        )
        .unwrap();
    assert_eq!(
        (e.id.as_str(), e.status),
        ("acme:pay/api@1.0.0", Status::Draft)
    );
    assert!(e.review.previous.is_none() && e.is_cleared());

    // Additive: fine in a minor, cleared without approval.
    let e = reg
        .register(
            &api(
                "1.1.0",
                "charge: func(cents: u64) -> bool; refund: func(id: u64);",
            ),
            "api",
            Compatibility::Callers,
        )
        .unwrap();
    assert_eq!(e.review.previous.as_deref(), Some("acme:pay/api@1.0.0"));
    assert!(!e.review.breaking && e.is_cleared());
    assert_eq!(e.review.diff.as_ref().unwrap().changes.len(), 1);

    // Breaking in a minor: refused, with the gate's reason.
    let err = reg
        .register(
            &api(
                "1.2.0",
                "charge: func(cents: u32) -> bool; refund: func(id: u64);",
            ),
            "api",
            Compatibility::Callers,
        )
        .unwrap_err();
    match &err {
        RegistryError::SemverRefused { id, reason, review } => {
            assert_eq!(id, "acme:pay/api@1.2.0");
            assert!(
                reason.contains("need at least a major bump from 1.1.0"),
                "{reason}"
            );
            assert!(review.breaking);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        reg.get("acme:pay/api@1.2.0").is_none(),
        "nothing registered"
    );

    // Breaking in a major: registered, held for approval.
    let e = reg
        .register(
            &api("2.0.0", "charge: func(cents: u32) -> bool;"),
            "api",
            Compatibility::Callers,
        )
        .unwrap();
    assert!(e.review.needs_approval && !e.is_cleared());
    assert_eq!(
        reg.approve("acme:pay/api@2.0.0").unwrap().status,
        Status::Approved
    );
    assert!(reg.get("acme:pay/api@2.0.0").unwrap().is_cleared());
    assert_eq!(reg.latest("acme:pay/api").unwrap().id, "acme:pay/api@2.0.0");

    // A backported patch is compared with the version just below it.
    let e = reg
        .register(
            &api("1.0.1", "charge: func(cents: u64) -> bool;"),
            "api",
            Compatibility::Callers,
        )
        .unwrap();
    assert_eq!(e.review.previous.as_deref(), Some("acme:pay/api@1.0.0"));
    assert!(e.review.diff.as_ref().unwrap().is_empty());

    assert_eq!(
        reg.deprecate("acme:pay/api@1.0.0").unwrap().status,
        Status::Deprecated
    );
    let ids: Vec<&str> = reg.entries().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "acme:pay/api@1.0.0",
            "acme:pay/api@1.0.1",
            "acme:pay/api@1.1.0",
            "acme:pay/api@2.0.0"
        ]
    );
}

#[test]
fn bad_registrations_name_the_problem() {
    let mut reg = Registry::new();
    reg.register(&api("1.0.0", "f: func();"), "api", Compatibility::Callers)
        .unwrap();
    let e = reg
        .register(&api("1.0.0", "f: func();"), "api", Compatibility::Callers)
        .unwrap_err();
    assert_eq!(e, RegistryError::Duplicate("acme:pay/api@1.0.0".into()));
    let e = reg
        .register(
            &pkg("package acme:pay;\ninterface api { }\n"),
            "api",
            Compatibility::Callers,
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "acme:pay/api has no version: registered interfaces need `package ns:name@x.y.z;`"
    );
    let e = reg
        .register(&api("1.1.0", "f: func();"), "nope", Compatibility::Callers)
        .unwrap_err();
    assert!(matches!(e, RegistryError::Wit(_)), "{e}");
    assert_eq!(
        reg.approve("acme:pay/api@9.9.9").unwrap_err(),
        RegistryError::NotFound("acme:pay/api@9.9.9".into())
    );
}

#[test]
fn an_implementers_policy_treats_additions_as_breaking() {
    let mut reg = Registry::new();
    reg.register(
        &api("1.0.0", "f: func();"),
        "api",
        Compatibility::Implementers,
    )
    .unwrap();
    let review = reg
        .review(
            &api("1.1.0", "f: func(); g: func();"),
            "api",
            Compatibility::Implementers,
        )
        .unwrap();
    assert!(review.breaking && !review.semver.as_ref().unwrap().allowed);
    let review = reg
        .review(
            &api("2.0.0", "f: func(); g: func();"),
            "api",
            Compatibility::Implementers,
        )
        .unwrap();
    assert!(review.needs_approval && review.semver.unwrap().allowed);
}

#[test]
fn a_backport_must_also_fit_below_the_next_version() {
    let mut reg = Registry::new();
    reg.register(&api("1.0.0", "f: func();"), "api", Compatibility::Callers)
        .unwrap();
    reg.register(&api("1.2.0", "f: func();"), "api", Compatibility::Callers)
        .unwrap();
    // 1.1.0 adds `g`, which 1.2.0 (a minor bump above it) does not have.
    let e = reg
        .register(
            &api("1.1.0", "f: func(); g: func();"),
            "api",
            Compatibility::Callers,
        )
        .unwrap_err();
    match e {
        RegistryError::SemverRefused { review, .. } => {
            assert_eq!(review.next.as_deref(), Some("acme:pay/api@1.2.0"));
            assert!(review.semver.unwrap().allowed);
            assert!(!review.next_semver.unwrap().allowed);
        }
        other => panic!("{other:?}"),
    }
    // Without `g` it fits: 1.1.0 equals both neighbours.
    reg.register(&api("1.1.0", "f: func();"), "api", Compatibility::Callers)
        .unwrap();
}
