//! Core modules: numeric parameters and results, WASI p1 reactors.

use serde_json::json;
use wasmswap_core::wasmtime::Val;
use wasmswap_core::{Error, ErrorKind};

use crate::version_of;

#[tokio::test]
async fn numeric_exports_over_json() {
    let v = version_of(test_programs::NUMERIC_MODULE);
    assert_eq!(
        v.invoke_json("add", &json!([40, 2])).await.unwrap(),
        json!(42)
    );
    // i32 accepts the unsigned range too and wraps like wasm does.
    assert_eq!(
        v.invoke_json("add", &json!([4294967295u32, 1]))
            .await
            .unwrap(),
        json!(0)
    );
    assert_eq!(
        v.invoke_json("mul_i64", &json!([3_000_000_000i64, 3]))
            .await
            .unwrap(),
        json!(9_000_000_000i64)
    );
    assert_eq!(
        v.invoke_json("div_f64", &json!([1.0, 4.0])).await.unwrap(),
        json!(0.25)
    );
    assert_eq!(
        v.invoke_json("div_f64", &json!([1.0, 0.0])).await.unwrap(),
        json!("Infinity")
    );
    assert_eq!(
        v.invoke_json("scale_f32", &json!([1.5, 2])).await.unwrap(),
        json!(3.0)
    );
    assert_eq!(
        v.invoke_json("fib", &json!([90])).await.unwrap(),
        json!(2880067194370816120i64)
    );
    assert_eq!(
        v.invoke_json("health_check", &json!([])).await.unwrap(),
        json!(1)
    );
}

#[tokio::test]
async fn raw_values_and_type_checks() {
    let v = version_of(test_programs::NUMERIC_MODULE);
    let out = v
        .invoke_core("add", &[Val::I32(1), Val::I32(2)])
        .await
        .unwrap();
    assert_eq!(out[0].unwrap_i32(), 3);
    match v
        .invoke_core("add", &[Val::I32(1), Val::I64(2)])
        .await
        .unwrap_err()
    {
        Error::BadArgument {
            param, expected, ..
        } => assert_eq!((param.as_str(), expected.as_str()), ("arg1", "i32")),
        other => panic!("expected BadArgument, got {other:?}"),
    }
    match v.invoke_json("add", &json!([1, 2.5])).await.unwrap_err() {
        Error::BadArgument {
            param,
            expected,
            problem,
        } => {
            assert_eq!(
                (param.as_str(), expected.as_str(), problem.as_str()),
                ("arg1", "i32", "got number 2.5")
            )
        }
        other => panic!("expected BadArgument, got {other:?}"),
    }
    match v
        .invoke_json("add", &json!([1, 1u64 << 40]))
        .await
        .unwrap_err()
    {
        Error::BadArgument { problem, .. } => assert_eq!(problem, "1099511627776 is out of range"),
        other => panic!("expected BadArgument, got {other:?}"),
    }
}

#[tokio::test]
async fn a_trap_is_reported_with_its_code() {
    let v = version_of(test_programs::NUMERIC_MODULE);
    match v.invoke_json("div_trap", &json!([1, 0])).await.unwrap_err() {
        Error::Trap { code, message } => {
            assert_eq!(code, Some(wasmtime::Trap::UnreachableCodeReached));
            assert!(
                message.contains("div_trap"),
                "backtrace names the function: {message}"
            );
        }
        other => panic!("expected Trap, got {other:?}"),
    }
    // The next call gets a fresh instance and works.
    assert_eq!(
        v.invoke_json("div_trap", &json!([9, 3])).await.unwrap(),
        json!(3)
    );
    let c = v.counters();
    assert_eq!((c.calls, c.errors, c.errors_of(ErrorKind::Trap)), (2, 1, 1));
}

#[tokio::test]
async fn inline_wat_modules_without_wasi() {
    let rt = crate::runtime();
    let a = rt.load(&test_programs::wat("add")).unwrap();
    assert_eq!(a.info().wasi, None);
    let v = wasmswap_core::Version::new(&rt, &a, "wat", Default::default(), Default::default())
        .unwrap();
    assert_eq!(
        v.invoke_json("add", &json!({"arg0": 5, "arg1": 6}))
            .await
            .unwrap(),
        json!(11)
    );
}

#[tokio::test]
async fn wasi_commands_run_and_report_their_exit_status() {
    // A WASI p1 command: `_start` writes to (discarded) stdout and exits.
    let command = |status: i32| {
        wat::parse_str(format!(
            r#"(module
                (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
                (memory (export "memory") 1)
                (func (export "_start") (call $exit (i32.const {status}))))"#
        ))
        .unwrap()
    };
    let rt = crate::runtime();
    let ok = rt.load(&command(0)).unwrap();
    let ok = wasmswap_core::Version::new(&rt, &ok, "ok", Default::default(), Default::default())
        .unwrap();
    assert_eq!(
        ok.invoke_json("_start", &json!([])).await.unwrap(),
        json!(null)
    );
    let bad = rt.load(&command(3)).unwrap();
    let bad = wasmswap_core::Version::new(&rt, &bad, "bad", Default::default(), Default::default())
        .unwrap();
    match bad.invoke_json("_start", &json!([])).await.unwrap_err() {
        Error::Exit(3) => {}
        other => panic!("expected Exit(3), got {other:?}"),
    }
    assert_eq!(bad.counters().errors_of(ErrorKind::Trap), 1);
}

#[tokio::test]
async fn the_runtime_says_how_long_since_its_last_call() {
    // A runtime of its own: the shared one is busy with other tests.
    let rt = wasmswap_core::Runtime::new().unwrap();
    assert_eq!(rt.idle_for(), None, "no call yet");
    let artifact = rt
        .load(&test_programs::bytes(test_programs::NUMERIC_MODULE))
        .unwrap();
    let v = wasmswap_core::Version::new(
        &rt,
        &artifact,
        "v1",
        wasmswap_core::Limits::default(),
        wasmswap_core::Capabilities::none(),
    )
    .unwrap();
    assert_eq!(rt.idle_for(), None, "loading is not a call");
    v.invoke_json("add", &json!([1, 2])).await.unwrap();
    let just_after = rt.idle_for().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(60)).await;
    let later = rt.idle_for().unwrap();
    assert!(
        later >= just_after + std::time::Duration::from_millis(60),
        "{just_after:?} then {later:?}"
    );
    v.invoke_json("add", &json!([1, 2])).await.unwrap();
    assert!(rt.idle_for().unwrap() < later, "a new call resets it");
}
