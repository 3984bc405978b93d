//! Property tests: weights, route validation and the sticky hash.

use proptest::prelude::*;
use wasmswap_core::{Route, Service, Weight, sticky_bucket};

proptest! {
    #[test]
    fn weights_accept_exactly_their_range(bp in 0u16..=u16::MAX) {
        let w = Weight::from_basis_points(bp);
        prop_assert_eq!(w.is_ok(), bp <= 10_000);
        if let Ok(w) = w {
            // basis points -> percent -> basis points is exact.
            prop_assert_eq!(Weight::from_percent(w.percent()).unwrap(), w);
            // JSON round trip.
            let back: Weight = serde_json::from_str(&serde_json::to_string(&w).unwrap()).unwrap();
            prop_assert_eq!(back, w);
        } else {
            prop_assert!(serde_json::from_str::<Weight>(&bp.to_string()).is_err());
        }
    }

    #[test]
    fn percent_weights_reject_out_of_range(p in -1000.0f64..1000.0) {
        prop_assert_eq!(Weight::from_percent(p).is_ok(), (0.0..=100.0).contains(&p));
    }

    #[test]
    fn sticky_bucket_is_a_pure_function_of_service_and_key(service in "[a-z-]{1,20}", key in ".{0,64}") {
        let b = sticky_bucket(&service, &key);
        prop_assert!(b < 10_000);
        prop_assert_eq!(b, sticky_bucket(&service, &key));
        // The documented definition, so another implementation (another
        // node, another language) computes the same bucket.
        let salt = xxhash_rust::xxh3::xxh3_64(service.as_bytes());
        prop_assert_eq!(u64::from(b), xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), salt) % 10_000);
    }

    #[test]
    fn keys_keep_their_side_as_the_weight_grows(key in ".{0,32}", lo in 0u16..=10_000, hi in 0u16..=10_000) {
        let (lo, hi) = (lo.min(hi), lo.max(hi));
        let b = sticky_bucket("svc", &key);
        // In the candidate at the lower weight implies in it at the higher one.
        prop_assert!(b >= lo || b < hi);
    }
}

#[test]
fn routes_validate_for_any_weight_and_mode() {
    let rt = crate::runtime();
    let add = rt.load(&test_programs::wat("add")).unwrap();
    let version = |label: &str| {
        wasmswap_core::Version::new(&rt, &add, label, Default::default(), Default::default())
            .unwrap()
    };
    let (v1, v2) = (version("a"), version("b"));
    let mut runner = proptest::test_runner::TestRunner::default();
    runner
        .run(&(0u16..=10_000, any::<bool>()), |(bp, mirror)| {
            let w = Weight::from_basis_points(bp).unwrap();
            let route = if mirror {
                Route::mirror(v1.clone(), v2.clone(), w)
            } else {
                Route::split(v1.clone(), v2.clone(), w)
            };
            prop_assert!(route.validate().is_ok());
            let svc = Service::new("p", route).unwrap();
            // A self-split is always refused and leaves the route untouched.
            let generation = svc.generation();
            prop_assert!(
                svc.set_route(Route::split(v2.clone(), v2.clone(), w))
                    .is_err()
            );
            prop_assert_eq!(svc.generation(), generation);
            Ok(())
        })
        .unwrap();
}
