//! JSON invocation of a real component over every WIT type family.

use serde_json::{Value, json};
use wasmswap_core::Error;

use crate::version_of;

fn types() -> wasmswap_core::Version {
    version_of(test_programs::TYPES_COMPONENT)
}

#[tokio::test]
async fn every_type_family_round_trips() {
    let v = types();
    let cases: Vec<(&str, Value, Value)> = vec![
        ("negate", json!([true]), json!(false)),
        ("add-u8", json!([250, 10]), json!(4)),
        ("add-s16", json!([-300, 100]), json!(-200)),
        (
            "add-u32",
            json!([4_000_000_000u32, 1]),
            json!(4_000_000_001u32),
        ),
        (
            "add-s64",
            json!([-9_000_000_000_000i64, 1]),
            json!(-8_999_999_999_999i64),
        ),
        ("add-u64", json!([u64::MAX - 1, 1]), json!(u64::MAX)),
        (
            "add-u64",
            json!(["18446744073709551614", "1"]),
            json!(u64::MAX),
        ),
        (
            "mix-ints",
            json!([-1, 65535, -2147483648i64]),
            json!(-2147418114i64),
        ),
        ("mul-f32", json!([1.5, 4.0]), json!(6.0)),
        ("sqrt-f64", json!([2.25]), json!(1.5)),
        ("sqrt-f64", json!([-1.0]), json!("NaN")),
        ("sqrt-f64", json!(["Infinity"]), json!("Infinity")),
        ("next-char", json!(["a"]), json!("b")),
        ("next-char", json!(["é"]), json!("ê")),
        ("greet", json!(["wasm"]), json!("hello, wasm!")),
        ("greet", json!({"name": "named"}), json!("hello, named!")),
        ("greet", json!("bare"), json!("hello, bare!")),
        ("sum-list", json!([[1, 2, 3, -10]]), json!(-4)),
        ("sum-list", json!([[]]), json!(0)),
        ("reverse-bytes", json!([[1, 2, 255]]), json!([255, 2, 1])),
        (
            "move-point",
            json!([{"x": 1, "y": 2, "label": "p"}, 10, -20]),
            json!({"x": 11, "y": -18, "label": "p"}),
        ),
        ("swap-pair", json!([["k", 7]]), json!([7, "k"])),
        ("area", json!([{"rect": [2.0, 3.5]}]), json!(7.0)),
        ("area", json!(["empty"]), json!(0.0)),
        ("next-color", json!(["blue"]), json!("red")),
        ("invert", json!([["read", "exec"]]), json!(["write"])),
        ("invert", json!([[]]), json!(["read", "write", "exec"])),
        ("first-word", json!(["hello big world"]), json!("hello")),
        ("first-word", json!(["   "]), json!(null)),
        ("checked-div", json!([7, 2]), json!({"ok": 3})),
        (
            "checked-div",
            json!([7, 0]),
            json!({"err": "cannot divide 7 by 0"}),
        ),
        ("no-args", json!([]), json!(null)),
        ("no-args", json!(null), json!(null)),
        ("health-check", json!([]), json!(true)),
        (
            "wasmswap:guests/api@0.1.0#echo",
            json!(["iface"]),
            json!("iface"),
        ),
    ];
    for (func, args, want) in cases {
        let got = v
            .invoke_json(func, &args)
            .await
            .unwrap_or_else(|e| panic!("{func}({args}): {e}"));
        assert_eq!(got, want, "{func}({args})");
    }
    let area = v
        .invoke_json("area", &json!([{"circle": 1.0}]))
        .await
        .unwrap();
    assert!((area.as_f64().unwrap() - std::f64::consts::PI).abs() < 1e-12);
}

async fn bad(func: &str, args: Value) -> (String, String, String) {
    match types().invoke_json(func, &args).await.unwrap_err() {
        Error::BadArgument {
            param,
            expected,
            problem,
        } => (param, expected, problem),
        other => panic!("{func}({args}): expected BadArgument, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_arguments_name_parameter_and_type() {
    let (p, e, pr) = bad("add-u8", json!([256, 1])).await;
    assert_eq!(
        (p.as_str(), e.as_str(), pr.as_str()),
        ("a", "u8", "256 is out of range")
    );

    let (p, e, _) = bad("add-u8", json!([1, -1])).await;
    assert_eq!((p.as_str(), e.as_str()), ("b", "u8"));

    // A short array leaves trailing parameters null (fine for an option,
    // an error naming the parameter otherwise); a long one is refused.
    let (p, e, pr) = bad("add-u8", json!([1])).await;
    assert_eq!(
        (p.as_str(), e.as_str(), pr.as_str()),
        ("b", "u8", "got null")
    );
    let (p, e, pr) = bad("add-u8", json!([1, 2, 3])).await;
    assert_eq!(p, "arguments");
    assert!(
        e.contains("2 argument(s)") && e.contains("a: u8, b: u8"),
        "{e}"
    );
    assert_eq!(pr, "got 3");

    let (p, e, pr) = bad("negate", json!(["yes"])).await;
    assert_eq!(
        (p.as_str(), e.as_str(), pr.as_str()),
        ("b", "bool", "got string \"yes\"")
    );

    let (p, _, pr) = bad("next-char", json!(["ab"])).await;
    assert_eq!(
        (p.as_str(), pr.as_str()),
        ("c", "got a string of 2 characters")
    );

    let (p, e, _) = bad("sum-list", json!([[1, "two"]])).await;
    assert_eq!((p.as_str(), e.as_str()), ("xs[1]", "s64"));

    let (p, _, pr) = bad("move-point", json!([{"x": 1, "y": 2}, 0, 0])).await;
    assert_eq!(
        (p.as_str(), pr.as_str()),
        ("p.label", "the field is missing")
    );

    let (p, _, pr) = bad(
        "move-point",
        json!([{"x": 1, "y": 2, "label": "", "z": 3}, 0, 0]),
    )
    .await;
    assert_eq!(
        (p.as_str(), pr.as_str()),
        ("p.z", "the record has no such field")
    );

    let (p, _, pr) = bad("move-point", json!([{"x": 1.5, "y": 2, "label": ""}, 0, 0])).await;
    assert_eq!((p.as_str(), pr.as_str()), ("p.x", "got number 1.5"));

    let (p, _, _) = bad("swap-pair", json!([["k"]])).await;
    assert_eq!(p, "t");

    let (p, _, pr) = bad("area", json!([{"triangle": 1.0}])).await;
    assert_eq!(
        (p.as_str(), pr.as_str()),
        ("s", "no case named \"triangle\"")
    );

    let (p, _, _) = bad("area", json!(["circle"])).await;
    assert_eq!(p, "s.circle");

    let (p, e, _) = bad("next-color", json!(["purple"])).await;
    assert_eq!((p.as_str(), e.as_str()), ("c", "enum { red, green, blue }"));

    let (p, _, pr) = bad("invert", json!([["read", "fly"]])).await;
    assert_eq!((p.as_str(), pr.as_str()), ("p[1]", "no flag named \"fly\""));

    let (p, _, _) = bad("greet", json!({"nom": "x"})).await;
    assert_eq!(p, "nom");
}

#[tokio::test]
async fn unknown_functions_are_reported() {
    let v = types();
    for name in [
        "nope",
        "wasmswap:guests/api@0.1.0#nope",
        "wasmswap:guests/api@0.1.0",
        "point",
    ] {
        match v.invoke_json(name, &json!([])).await.unwrap_err() {
            Error::NoSuchFunction(n) => assert_eq!(n, name),
            other => panic!("{name}: expected NoSuchFunction, got {other:?}"),
        }
    }
    let c = v.counters();
    assert_eq!(c.errors_of(wasmswap_core::ErrorKind::BadRequest), 4);
}

#[tokio::test]
async fn each_call_gets_a_fresh_instance_and_is_counted() {
    let v = types();
    for i in 0..20 {
        assert_eq!(
            v.invoke_json("add-u32", &json!([i, 1])).await.unwrap(),
            json!(i + 1)
        );
    }
    let c = v.counters();
    assert_eq!((c.calls, c.errors), (20, 0));
    assert_eq!(c.latency_buckets.iter().sum::<u64>(), 20);
    assert!(c.memory_high_water_bytes > 0);
}

#[tokio::test]
async fn typed_component_values_work_too() {
    use wasmswap_core::wasmtime::component::Val;
    let out = types()
        .invoke_component("add-u8", &[Val::U8(1), Val::U8(2)])
        .await
        .unwrap();
    assert_eq!(out, vec![Val::U8(3)]);
}
