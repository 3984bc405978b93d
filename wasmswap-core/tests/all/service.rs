//! Services: atomic route swaps under load, sticky and weighted splits,
//! mirroring, drain accounting and rollback.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use serde_json::json;
use wasmswap_core::{
    CandidateMode, Capabilities, Limits, Route, RouteChange, Runtime, Service, Version, Weight,
};

/// A module whose `id` export answers `n`, labelled `v{n}`.
fn id_version(rt: &Runtime, n: u32) -> Version {
    let wasm = wat::parse_str(format!(
        r#"(module (memory 1) (data (i32.const 0) "v{n}")
             (func (export "id") (result i32) i32.const {n})
             (func (export "slow") (param i32) (result i32)
               (local i32)
               (loop $l (local.set 1 (i32.add (local.get 1) (i32.const 1)))
                 (br_if $l (i32.lt_u (local.get 1) (local.get 0))))
               i32.const {n}))"#
    ))
    .unwrap();
    let a = rt.load(&wasm).unwrap();
    Version::new(
        rt,
        &a,
        format!("v{n}"),
        Limits::default(),
        Capabilities::none(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_swaps_and_rollbacks_under_load_drop_nothing() {
    let rt = crate::runtime();
    let versions: Vec<Version> = (1..=4).map(|n| id_version(&rt, n)).collect();
    let svc = Service::new("swap-under-load", Route::stable(versions[0].clone())).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, mismatched) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );

    let callers: Vec<_> = (0..6)
        .map(|i| {
            let (svc, stop) = (svc.clone(), stop.clone());
            let (ok, failed, mismatched) = (ok.clone(), failed.clone(), mismatched.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("caller-{i}-{n}");
                    n += 1;
                    match svc.invoke_json(Some(&key), "id", &json!([])).await {
                        Ok(served) => {
                            // The guest that ran is the version the lease named.
                            let answered = served.value.as_i64().unwrap();
                            if format!("v{answered}") != served.version {
                                mismatched.fetch_add(1, Ordering::Relaxed);
                            }
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();

    let swapper = {
        let (svc, versions) = (svc.clone(), versions.clone());
        tokio::task::spawn_blocking(move || {
            for i in 0..1000usize {
                let next = &versions[(i + 1) % versions.len()];
                let route = match i % 3 {
                    0 => Route::stable(next.clone()),
                    1 => Route::split(
                        versions[0].clone(),
                        versions[1 + i % 3].clone(),
                        Weight::from_percent(50.0).unwrap(),
                    ),
                    _ => Route::stable(next.clone()),
                };
                let _ = svc.set_route(route).unwrap();
                if i % 2 == 0 {
                    let _ = svc.rollback().unwrap();
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    swapper.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.await.unwrap();
    }
    let (ok, failed, mismatched) = (
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        mismatched.load(Ordering::Relaxed),
    );
    assert_eq!(failed, 0, "failed calls");
    assert_eq!(
        mismatched, 0,
        "calls answered by another version than their lease"
    );
    assert!(ok > 1000, "only {ok} calls completed during the swaps");
    assert_eq!(svc.generation(), 1 + 1000 + 500);
    // Every lease was returned.
    for v in &versions {
        assert_eq!(v.in_flight(), 0, "{} still in flight", v.label());
    }
    let total: u64 = versions.iter().map(|v| v.counters().calls).sum();
    assert_eq!(total, ok);
}

#[test]
fn weighted_split_matches_its_weight() {
    let rt = crate::runtime();
    let (a, b) = (id_version(&rt, 1), id_version(&rt, 2));
    let svc = Service::new(
        "stats",
        Route::split(a, b.clone(), Weight::from_percent(10.0).unwrap()),
    )
    .unwrap();
    // Random keys from a seeded generator: the test is repeatable, and the
    // tolerance still holds for any seed. Binomial(100000, 0.1) has a standard
    // deviation of 94.9 calls (0.095 %); ±0.5 % is over 5 standard
    // deviations, a false failure about once in 10^7 seeds.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let n = 100_000;
    let candidate = (0..n)
        .filter(|_| {
            let key = format!("user-{:016x}", rng.random::<u64>());
            svc.pick(Some(&key)).lease.version().same_as(&b)
        })
        .count();
    let share = candidate as f64 / n as f64;
    assert!((share - 0.10).abs() < 0.005, "candidate share {share}");

    // Unkeyed calls are spread evenly: within 0.1 % over 100,000 calls.
    let unkeyed = (0..n)
        .filter(|_| svc.pick(None).lease.version().same_as(&b))
        .count();
    let share = unkeyed as f64 / n as f64;
    assert!(
        (share - 0.10).abs() < 0.001,
        "unkeyed candidate share {share}"
    );

    // 0.1 % resolution.
    let svc = Service::new(
        "fine",
        Route::split(
            id_version(&rt, 3),
            id_version(&rt, 4),
            Weight::from_percent(0.1).unwrap(),
        ),
    )
    .unwrap();
    let hits = (0..n)
        .filter(|_| svc.pick(None).lease.version().label() == "v4")
        .count();
    assert_eq!(hits, 100);
}

#[test]
fn a_key_never_sees_two_versions_under_one_route() {
    let rt = crate::runtime();
    let (a, b) = (id_version(&rt, 1), id_version(&rt, 2));
    let svc = Service::new(
        "sticky",
        Route::split(a.clone(), b.clone(), Weight::from_percent(30.0).unwrap()),
    )
    .unwrap();
    let mut seen: HashMap<String, String> = HashMap::new();
    for round in 0..10 {
        for k in 0..5000 {
            let key = format!("session-{k}");
            let label = svc.pick(Some(&key)).lease.version().label().to_string();
            let first = seen.entry(key.clone()).or_insert_with(|| label.clone());
            assert_eq!(*first, label, "key {key} moved in round {round}");
        }
    }
    // Growing the candidate's weight keeps every key already on it.
    let on_candidate: Vec<String> = seen
        .iter()
        .filter(|(_, v)| *v == "v2")
        .map(|(k, _)| k.clone())
        .collect();
    let _ = svc
        .set_route(Route::split(a, b, Weight::from_percent(60.0).unwrap()))
        .unwrap();
    for key in on_candidate {
        assert_eq!(svc.pick(Some(&key)).lease.version().label(), "v2");
    }
    // Another service instance with the same name buckets the same way
    // (what another node would compute).
    let twin = Service::new("sticky", svc.route()).unwrap();
    for k in 0..1000 {
        let key = format!("session-{k}");
        assert_eq!(
            svc.pick(Some(&key)).lease.version().label(),
            twin.pick(Some(&key)).lease.version().label()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_calls_finish_on_their_version_and_drain() {
    let rt = crate::runtime();
    let (v1, v2) = (id_version(&rt, 1), id_version(&rt, 2));
    let svc = Service::new("drain", Route::stable(v1.clone())).unwrap();
    // A slow call on v1 (tens of ms), then swap to v2 while it runs.
    let slow = {
        let svc = svc.clone();
        tokio::spawn(async move { svc.invoke_json(None, "slow", &json!([200_000_000])).await })
    };
    while v1.in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    let swap = svc.set_route(Route::stable(v2.clone())).unwrap();
    assert_eq!(swap.retired().len(), 1);
    assert!(swap.retired()[0].same_as(&v1));
    // New calls go to v2 at once.
    assert_eq!(
        svc.invoke_json(None, "id", &json!([]))
            .await
            .unwrap()
            .version,
        "v2"
    );
    // The drain is not done while the slow call runs...
    let early = swap.drained(Duration::from_millis(1)).await;
    assert_eq!(early.still_in_flight, vec![("v1".to_string(), 1)]);
    // ...and the slow call finishes on v1.
    let served = slow.await.unwrap().unwrap();
    assert_eq!(
        (served.version.as_str(), served.value.clone()),
        ("v1", json!(1))
    );
    assert!(swap.drained(Duration::from_secs(5)).await.is_drained());
    assert_eq!(v1.in_flight(), 0);
}

#[tokio::test]
async fn rollback_is_a_pointer_swap_and_emits_events() {
    let rt = crate::runtime();
    let (v1, v2) = (id_version(&rt, 1), id_version(&rt, 2));
    let svc = Service::new("rollback", Route::stable(v1.clone())).unwrap();
    let mut events = svc.subscribe();
    assert!(svc.rollback().is_err(), "nothing to roll back to yet");

    let _ = svc.set_route(Route::stable(v2.clone())).unwrap();
    assert_eq!(
        svc.invoke_json(None, "id", &json!([])).await.unwrap().value,
        json!(2)
    );
    let swap = svc.rollback().unwrap();
    assert_eq!(
        svc.invoke_json(None, "id", &json!([])).await.unwrap().value,
        json!(1)
    );
    assert!(swap.retired()[0].same_as(&v2));
    // The previous route is kept warm: rolling back again rolls forward.
    let _ = svc.rollback().unwrap();
    assert_eq!(
        svc.invoke_json(None, "id", &json!([])).await.unwrap().value,
        json!(2)
    );

    let e1 = events.recv().await.unwrap();
    assert_eq!(
        (
            e1.kind,
            e1.generation,
            e1.from.stable.as_str(),
            e1.to.stable.as_str()
        ),
        (RouteChange::Swap, 2, "v1", "v2")
    );
    let e2 = events.recv().await.unwrap();
    assert_eq!(
        (e2.kind, e2.generation, e2.to.stable.as_str()),
        (RouteChange::Rollback, 3, "v1")
    );
    let e3 = events.recv().await.unwrap();
    assert_eq!(
        (e3.kind, e3.to.stable.as_str()),
        (RouteChange::Rollback, "v2")
    );

    // Forgetting the warm route lets the old version go once it drains.
    assert!(
        svc.forget_previous(Duration::from_secs(1))
            .await
            .is_drained()
    );
    assert!(svc.previous_route().is_none());
    assert!(svc.rollback().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_compares_but_never_answers() {
    let rt = crate::runtime();
    let (v1, v1_again, v2) = (id_version(&rt, 1), id_version(&rt, 1), id_version(&rt, 2));
    // A mirror that answers like stable: equal.
    let svc = Service::new(
        "mirror",
        Route::mirror(v1.clone(), v1_again.clone(), Weight::FULL),
    )
    .unwrap();
    for _ in 0..20 {
        let served = svc.invoke_json(None, "id", &json!([])).await.unwrap();
        assert_eq!(
            (served.version.as_str(), served.value.clone()),
            ("v1", json!(1))
        );
    }
    // One that answers differently: different, and still never returned.
    let _ = svc
        .set_route(Route::mirror(v1.clone(), v2.clone(), Weight::FULL))
        .unwrap();
    for _ in 0..20 {
        assert_eq!(
            svc.invoke_json(None, "id", &json!([])).await.unwrap().value,
            json!(1)
        );
    }
    // Both sides refuse the same bad argument in the same way: equal.
    let _ = svc
        .invoke_json(None, "id", &json!(["junk"]))
        .await
        .unwrap_err();
    // Wait for the background mirror calls to land.
    for _ in 0..200 {
        if v1_again.counters().mirror_equal >= 20
            && v2.counters().mirror_different + v2.counters().mirror_equal >= 21
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(v1_again.counters().mirror_equal, 20);
    assert_eq!(v2.counters().mirror_different, 20);
    assert_eq!(
        v2.counters().mirror_equal,
        1,
        "the same bad-argument error on both sides"
    );
    assert_eq!(v1.counters().mirror_equal, 0, "stable is not the mirror");
    assert_eq!(v1.counters().calls, 41);
    assert_eq!(v2.counters().calls, 21);
}

/// Waits (up to 2 s) until `candidate` has recorded more than `seen`
/// mirrored outcomes, and returns how many it has.
async fn mirrored_after(candidate: &Version, seen: u64) -> u64 {
    let mirrored = || {
        let c = candidate.counters();
        c.mirror_equal + c.mirror_different + c.mirror_failed
    };
    for _ in 0..200 {
        if mirrored() > seen {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    mirrored()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrored_calls_lose_side_effecting_grants() {
    let rt = crate::runtime();
    let dir = tempfile::tempdir().unwrap();
    let probe = rt
        .load(&test_programs::bytes(
            test_programs::SANDBOX_PROBE_COMPONENT,
        ))
        .unwrap();
    let caps = Capabilities::none().preopen_writable(dir.path(), "/data");
    let stable = Version::new(
        &rt,
        &probe,
        "stable",
        Limits::default(),
        Capabilities::none(),
    )
    .unwrap();
    let candidate = Version::new(&rt, &probe, "candidate", Limits::default(), caps).unwrap();
    let svc = Service::new(
        "mirror-caps",
        Route::mirror(stable, candidate.clone(), Weight::FULL),
    )
    .unwrap();
    let _ = svc
        .invoke_json(None, "write-file", &json!(["/data/mirror.txt", "twice?"]))
        .await
        .unwrap();
    let seen = mirrored_after(&candidate, 0).await;
    assert!(
        !dir.path().join("mirror.txt").exists(),
        "a mirror wrote to the world"
    );
    // Configured with side effects, the mirror keeps its grant.
    let mut route = svc.route();
    route.candidate.as_mut().unwrap().mode = CandidateMode::Mirror { side_effects: true };
    let _ = svc.set_route(route).unwrap();
    let _ = svc
        .invoke_json(None, "write-file", &json!(["/data/mirror.txt", "allowed"]))
        .await
        .unwrap();
    // Wait for the mirrored call's outcome, not for the file: the file
    // exists from the guest's open, before its write (a CI run read "").
    mirrored_after(&candidate, seen).await;
    assert_eq!(
        std::fs::read_to_string(dir.path().join("mirror.txt")).unwrap(),
        "allowed"
    );
}

#[test]
fn invalid_routes_are_refused() {
    let rt = crate::runtime();
    let v1 = id_version(&rt, 1);
    let e = Service::new("bad", Route::split(v1.clone(), v1.clone(), Weight::FULL)).unwrap_err();
    assert!(
        e.to_string().contains("is the stable version itself"),
        "{e}"
    );
    let comp = crate::version_of(test_programs::TYPES_COMPONENT);
    let e = Service::new("bad", Route::split(v1.clone(), comp, Weight::FULL)).unwrap_err();
    assert!(
        e.to_string()
            .contains("both be components or both core modules"),
        "{e}"
    );
    assert!(Service::new("", Route::stable(v1)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_version_is_freed_only_after_its_last_call() {
    // Own runtime, so its count of live artifacts is ours alone.
    let rt = Runtime::new().unwrap();
    let (v1, v2) = (id_version(&rt, 1), id_version(&rt, 2));
    assert_eq!(rt.loaded_count(), 2);
    let svc = Service::new("free", Route::stable(v1.clone())).unwrap();
    let slow = {
        let svc = svc.clone();
        tokio::spawn(async move { svc.invoke_json(None, "slow", &json!([300_000_000])).await })
    };
    while v1.in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    let _ = svc.set_route(Route::stable(v2)).unwrap();
    // Unload v1: the service forgets it, and so does this test...
    let report = svc.forget_previous(Duration::from_millis(1)).await;
    assert_eq!(report.still_in_flight, vec![("v1".to_string(), 1)]);
    drop(v1);
    // ...but the running call still holds it: nothing is freed yet.
    assert_eq!(rt.loaded_count(), 2);
    let served = slow.await.unwrap().unwrap();
    assert_eq!((served.version.as_str(), served.value), ("v1", json!(1)));
    // The last lease is gone: v1 and its compiled code are freed.
    assert_eq!(rt.loaded_count(), 1);
}
