//! The JSON ↔ WIT fuzz target's properties (`wasmswap_core::fuzzing`),
//! replayed over its committed seeds and a fixed set of random inputs, so a
//! regression shows up in `cargo test` and not only under `cargo fuzz`.

use rand::{RngExt, SeedableRng};
use serde_json::json;
use wasmswap_core::fuzzing;

fn seeds() -> Vec<(String, Vec<u8>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/seeds/wit_json");
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .expect("fuzz/seeds/wit_json")
        .map(|e| {
            let path = e.unwrap().path();
            (path.display().to_string(), std::fs::read(&path).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn the_committed_seeds_hold_every_property() {
    let rt = crate::runtime();
    let seeds = seeds();
    assert!(seeds.len() >= 8, "only {} seeds", seeds.len());
    for (_, data) in &seeds {
        fuzzing::wit_json(&rt, data);
    }
}

#[test]
fn random_inputs_hold_every_property() {
    let rt = crate::runtime();
    // Fixed seed: the same 40 inputs every run (the fuzzer explores more).
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    for _ in 0..40 {
        let len = rng.random_range(16..2048);
        let data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        fuzzing::wit_json(&rt, &data);
    }
}

#[test]
fn nested_options_keep_some_none_apart_from_none() {
    let rt = crate::runtime();
    let trip = |ty: &str, v| fuzzing::json_round_trip(&rt, ty, &v).unwrap();
    let nested = "option<option<u32>>";
    assert_eq!(trip(nested, json!(null)), json!(null));
    assert_eq!(trip(nested, json!({"some": null})), json!({"some": null}));
    assert_eq!(trip(nested, json!({"some": 5})), json!({"some": 5}));
    // A bare value is `some`, as for any option.
    assert_eq!(trip(nested, json!(5)), json!({"some": 5}));
    assert_eq!(
        trip(
            "option<option<option<string>>>",
            json!({"some": {"some": null}})
        ),
        json!({"some": {"some": null}})
    );
    // A single option stays bare.
    assert_eq!(trip("option<u32>", json!(5)), json!(5));
    assert_eq!(
        trip(
            "list<option<option<bool>>>",
            json!([null, {"some": null}, true])
        ),
        json!([null, {"some": null}, {"some": true}])
    );
    // Junk inside the wrapper names the parameter.
    let err = fuzzing::json_round_trip(&rt, nested, &json!({"some": "x"})).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"bad argument `p0`: expected u32, got string "x""#
    );
}

#[test]
fn f64_survives_json_text_bit_for_bit() {
    // Found by the wit_json target once it sent values through JSON text:
    // without serde_json's `float_roundtrip` this parsed back one ulp off.
    let rt = crate::runtime();
    for x in [
        -2.2974057608002442e201_f64,
        f64::MIN_POSITIVE,
        5e-324,
        f64::MAX,
        0.1 + 0.2,
    ] {
        let text = json!(x).to_string();
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        let back = fuzzing::json_round_trip(&rt, "f64", &parsed).unwrap();
        assert_eq!(back.as_f64().unwrap().to_bits(), x.to_bits(), "{text}");
    }
}
