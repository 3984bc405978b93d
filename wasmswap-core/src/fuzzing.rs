//! Fuzzing entry points (feature `fuzzing`). The cargo-fuzz targets in
//! `fuzz/` are one line each; the generators and the properties they check
//! live here, next to the code under test, and build with the crate.
//!
//! [`wit_json`] turns fuzz bytes into WIT types, builds a real component
//! exporting a function that takes them (a dummy core module, as guest
//! toolchains would produce from the same WIT), loads it, and then checks
//! the JSON conversion both ways and the whole call path:
//!
//! - every value of the types survives value → JSON → value unchanged
//!   (floats bit for bit, NaN as NaN);
//! - arbitrary JSON, and valid JSON with one part replaced by junk, is
//!   either converted or refused with [`Error::BadArgument`] naming a path
//!   under the parameter; nothing panics;
//! - a call with valid JSON reaches the guest (whose body traps), and a
//!   call with junk is refused or reaches the guest — never another error.

use std::fmt::Write as _;
use std::sync::OnceLock;

use arbitrary::{Result as ArbResult, Unstructured};
use serde_json::{Map, Value as Json};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Type, Val};

use crate::artifact::Compiled;
use crate::error::Error;
use crate::{Capabilities, Limits, Runtime, Version, json};

/// Nodes in one generated parameter type: small enough that every type is
/// valid (the component model bounds type size and depth), large enough to
/// nest every kind inside every other.
const TYPE_BUDGET: usize = 24;
/// Deepest nesting of a generated type or JSON value.
const MAX_DEPTH: usize = 5;
/// Most parameters of the generated function (over 16 flat values the
/// canonical ABI passes them through memory: both paths get exercised).
const MAX_PARAMS: usize = 6;

/// One fuzz input: see the [module docs](self). Panics when a property does
/// not hold.
pub fn wit_json(runtime: &Runtime, data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(params) = gen_params(&mut u) else {
        return;
    };
    let wit = render_world(&params);
    let bytes = component_for(&wit);
    let artifact = match runtime.load(&bytes) {
        Ok(a) => a,
        // A slow compile under sanitizers on a busy machine is not a finding.
        Err(Error::Load(crate::LoadError::CompileTimeout(_))) => return,
        Err(e) => panic!("a component from valid WIT was refused: {e}\n{wit}"),
    };
    let version = Version::new(
        runtime,
        &artifact,
        "fuzz",
        Limits::default(),
        Capabilities::none(),
    )
    .expect("version");
    let types = param_types(runtime, &artifact);
    assert_eq!(types.len(), params.len(), "{wit}");

    // Value → JSON → value, for every parameter; the JSON values together
    // are a valid argument list.
    let mut args = Vec::with_capacity(types.len());
    for (name, ty) in &types {
        let Ok(val) = arb_val(&mut u, ty, 0) else {
            return;
        };
        let j = json::from_val(&val).expect("values of these types have a JSON form");
        // Through JSON text too, as a request body arrives: every f64 must
        // print and parse back to the same bits (serde_json's
        // `float_roundtrip` feature, enabled workspace-wide).
        let text = j.to_string();
        let j: Json = serde_json::from_str(&text).expect("serde_json parses what it printed");
        match json::to_val(&j, ty, name) {
            Ok(back) => assert!(
                same(&back, &val),
                "{name}: {val:?} → {text} → {back:?}\n{wit}"
            ),
            Err(e) => panic!("{name}: {val:?} → {text} was refused: {e}\n{wit}"),
        }
        args.push(j);
    }
    let valid = Json::Array(args);
    expect_reaches_guest(&version, &valid, &wit);

    // Valid JSON with one part replaced by junk, then wholly arbitrary JSON.
    let mut broken = valid.clone();
    if mutate(&mut u, &mut broken, 0).is_err() {
        return;
    }
    check_junk(&version, &types, &broken, &wit);
    if let Ok(junk) = arb_json(&mut u, 0, &types) {
        check_junk(&version, &types, &junk, &wit);
    }
}

/// `value` converted to the WIT type `ty` (an anonymous type's spelling,
/// such as `option<option<u32>>`) and back to JSON, through a real
/// component's types: what a guest receives, as the host would print it.
pub fn json_round_trip(runtime: &Runtime, ty: &str, value: &Json) -> crate::Result<Json> {
    let wit = format!("package fuzz:t;\n\nworld w {{\n  export f: func(p0: {ty});\n}}\n");
    let artifact = runtime.load(&component_for(&wit))?;
    let (name, ty) = param_types(runtime, &artifact).remove(0);
    json::from_val(&json::to_val(value, &ty, &name)?)
}

/// A generated WIT type. Named kinds (record, variant, enum, flags) become
/// type definitions in the world.
#[derive(Debug)]
enum Ty {
    Prim(&'static str),
    List(Box<Ty>),
    Option(Box<Ty>),
    Result(Option<Box<Ty>>, Option<Box<Ty>>),
    Tuple(Vec<Ty>),
    Record(Vec<Ty>),
    Variant(Vec<Option<Ty>>),
    Enum(usize),
    Flags(usize),
}

const PRIMS: &[&str] = &[
    "bool", "s8", "u8", "s16", "u16", "s32", "u32", "s64", "u64", "f32", "f64", "char", "string",
];

fn gen_params(u: &mut Unstructured<'_>) -> ArbResult<Vec<Ty>> {
    let n = u.int_in_range(1..=MAX_PARAMS)?;
    (0..n)
        .map(|_| {
            let mut budget = TYPE_BUDGET;
            gen_ty(u, 0, &mut budget)
        })
        .collect()
}

fn gen_ty(u: &mut Unstructured<'_>, depth: usize, budget: &mut usize) -> ArbResult<Ty> {
    *budget = budget.saturating_sub(1);
    if depth >= MAX_DEPTH || *budget == 0 || u.ratio(1, 3)? {
        return Ok(Ty::Prim(u.choose(PRIMS)?));
    }
    let mut child = |u: &mut Unstructured<'_>| gen_ty(u, depth + 1, budget);
    Ok(match u.int_in_range(0..=7)? {
        0 => Ty::List(Box::new(child(u)?)),
        1 => Ty::Option(Box::new(child(u)?)),
        2 => {
            let ok = if u.arbitrary()? {
                Some(Box::new(child(u)?))
            } else {
                None
            };
            let err = if u.arbitrary()? {
                Some(Box::new(child(u)?))
            } else {
                None
            };
            Ty::Result(ok, err)
        }
        3 => Ty::Tuple(children(u, 1..=4, &mut child)?),
        4 => Ty::Record(children(u, 1..=5, &mut child)?),
        5 => {
            let n = u.int_in_range(1..=5)?;
            let mut cases = Vec::with_capacity(n);
            for _ in 0..n {
                cases.push(if u.arbitrary()? {
                    Some(child(u)?)
                } else {
                    None
                });
            }
            Ty::Variant(cases)
        }
        6 => Ty::Enum(u.int_in_range(1..=6)?),
        _ => Ty::Flags(u.int_in_range(1..=32)?),
    })
}

fn children(
    u: &mut Unstructured<'_>,
    count: std::ops::RangeInclusive<usize>,
    child: &mut impl FnMut(&mut Unstructured<'_>) -> ArbResult<Ty>,
) -> ArbResult<Vec<Ty>> {
    let n = u.int_in_range(count)?;
    (0..n).map(|_| child(u)).collect()
}

/// `package fuzz:t; world w { <type definitions> export f: func(…); }`
fn render_world(params: &[Ty]) -> String {
    let mut defs = String::new();
    let mut next = 0;
    let names: Vec<String> = params
        .iter()
        .map(|t| render_ty(t, &mut defs, &mut next))
        .collect();
    let list: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, t)| format!("p{i}: {t}"))
        .collect();
    format!(
        "package fuzz:t;\n\nworld w {{\n{defs}  export f: func({});\n}}\n",
        list.join(", ")
    )
}

/// The WIT spelling of `ty`, appending definitions of named types to `defs`.
fn render_ty(ty: &Ty, defs: &mut String, next: &mut usize) -> String {
    let mut name = || {
        *next += 1;
        format!("t{next}")
    };
    match ty {
        Ty::Prim(p) => (*p).to_string(),
        Ty::List(t) => format!("list<{}>", render_ty(t, defs, next)),
        Ty::Option(t) => format!("option<{}>", render_ty(t, defs, next)),
        Ty::Result(None, None) => "result".into(),
        Ty::Result(Some(ok), None) => format!("result<{}>", render_ty(ok, defs, next)),
        Ty::Result(None, Some(err)) => format!("result<_, {}>", render_ty(err, defs, next)),
        Ty::Result(Some(ok), Some(err)) => format!(
            "result<{}, {}>",
            render_ty(ok, defs, next),
            render_ty(err, defs, next)
        ),
        Ty::Tuple(items) => {
            let items: Vec<String> = items.iter().map(|t| render_ty(t, defs, next)).collect();
            format!("tuple<{}>", items.join(", "))
        }
        Ty::Record(fields) => {
            let n = name();
            let fields: Vec<String> = fields
                .iter()
                .enumerate()
                .map(|(i, t)| format!("a{i}: {}", render_ty(t, defs, next)))
                .collect();
            let _ = writeln!(defs, "  record {n} {{ {} }}", fields.join(", "));
            n
        }
        Ty::Variant(cases) => {
            let n = name();
            let cases: Vec<String> = cases
                .iter()
                .enumerate()
                .map(|(i, t)| match t {
                    Some(t) => format!("c{i}({})", render_ty(t, defs, next)),
                    None => format!("c{i}"),
                })
                .collect();
            let _ = writeln!(defs, "  variant {n} {{ {} }}", cases.join(", "));
            n
        }
        Ty::Enum(count) => {
            let n = name();
            let cases: Vec<String> = (0..*count).map(|i| format!("e{i}")).collect();
            let _ = writeln!(defs, "  enum {n} {{ {} }}", cases.join(", "));
            n
        }
        Ty::Flags(count) => {
            let n = name();
            let flags: Vec<String> = (0..*count).map(|i| format!("g{i}")).collect();
            let _ = writeln!(defs, "  flags {n} {{ {} }}", flags.join(", "));
            n
        }
    }
}

/// A component from WIT alone: a dummy core module (every export's body
/// traps) with the world's type information, as a guest toolchain would.
fn component_for(wit: &str) -> Vec<u8> {
    let mut resolve = wit_parser::Resolve::new();
    let pkg = resolve
        .push_str("fuzz.wit", wit)
        .unwrap_or_else(|e| panic!("generated WIT does not parse: {e:#}\n{wit}"));
    let world = resolve.select_world(&[pkg], None).expect("one world");
    let mut module =
        wit_component::dummy_module(&resolve, world, wit_parser::ManglingAndAbi::Standard32);
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .expect("embed");
    wit_component::ComponentEncoder::default()
        .module(&module)
        .and_then(|e| e.validate(true).encode())
        .unwrap_or_else(|e| panic!("component encoding failed: {e:#}\n{wit}"))
}

/// The parameters of the component's export `f`, by the engine's own types.
fn param_types(runtime: &Runtime, artifact: &crate::Artifact) -> Vec<(String, Type)> {
    let Compiled::Component(c) = &artifact.inner.compiled else {
        panic!("loaded as a core module");
    };
    let engine = runtime.engine();
    let ty = c.component_type();
    let export = ty
        .get_export(engine, "f")
        .expect("the component exports `f`");
    let ComponentItem::ComponentFunc(f) = export.ty else {
        panic!("`f` is not a function");
    };
    f.params().map(|(n, t)| (n.to_string(), t)).collect()
}

/// An arbitrary value of the component type `ty`.
fn arb_val(u: &mut Unstructured<'_>, ty: &Type, depth: usize) -> ArbResult<Val> {
    let deeper = depth + 1;
    Ok(match ty {
        Type::Bool => Val::Bool(u.arbitrary()?),
        Type::S8 => Val::S8(u.arbitrary()?),
        Type::U8 => Val::U8(u.arbitrary()?),
        Type::S16 => Val::S16(u.arbitrary()?),
        Type::U16 => Val::U16(u.arbitrary()?),
        Type::S32 => Val::S32(u.arbitrary()?),
        Type::U32 => Val::U32(u.arbitrary()?),
        Type::S64 => Val::S64(u.arbitrary()?),
        Type::U64 => Val::U64(u.arbitrary()?),
        // From raw bits: NaNs, infinities, subnormals and -0 included.
        Type::Float32 => Val::Float32(f32::from_bits(u.arbitrary()?)),
        Type::Float64 => Val::Float64(f64::from_bits(u.arbitrary()?)),
        Type::Char => Val::Char(u.arbitrary()?),
        Type::String => Val::String(u.arbitrary()?),
        Type::List(l) => {
            let n = if depth >= MAX_DEPTH {
                0
            } else {
                u.int_in_range(0..=4)?
            };
            Val::List(
                (0..n)
                    .map(|_| arb_val(u, &l.ty(), deeper))
                    .collect::<ArbResult<_>>()?,
            )
        }
        Type::Record(r) => Val::Record(
            r.fields()
                .map(|f| Ok((f.name.to_string(), arb_val(u, &f.ty, deeper)?)))
                .collect::<ArbResult<_>>()?,
        ),
        Type::Tuple(t) => Val::Tuple(
            t.types()
                .map(|t| arb_val(u, &t, deeper))
                .collect::<ArbResult<_>>()?,
        ),
        Type::Variant(v) => {
            let cases: Vec<_> = v.cases().collect();
            let case = u.choose(&cases)?;
            let payload = match &case.ty {
                Some(t) => Some(Box::new(arb_val(u, t, deeper)?)),
                None => None,
            };
            Val::Variant(case.name.to_string(), payload)
        }
        Type::Enum(e) => {
            let names: Vec<&str> = e.names().collect();
            Val::Enum(u.choose(&names)?.to_string())
        }
        Type::Option(o) => Val::Option(if u.arbitrary()? {
            Some(Box::new(arb_val(u, &o.ty(), deeper)?))
        } else {
            None
        }),
        Type::Result(r) => {
            let side = |u: &mut Unstructured<'_>, t: Option<Type>| -> ArbResult<_> {
                t.map(|t| arb_val(u, &t, deeper).map(Box::new)).transpose()
            };
            Val::Result(if u.arbitrary()? {
                Ok(side(u, r.ok())?)
            } else {
                Err(side(u, r.err())?)
            })
        }
        Type::Flags(f) => {
            let mut set = Vec::new();
            for name in f.names() {
                if u.arbitrary()? {
                    set.push(name.to_string());
                }
            }
            Val::Flags(set)
        }
        other => unreachable!("the generator makes no {}", json::type_name(other)),
    })
}

/// Equality of component values, with floats compared bit for bit except
/// that any NaN equals any NaN (JSON has one NaN).
fn same(a: &Val, b: &Val) -> bool {
    let all = |a: &[Val], b: &[Val]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y));
    let boxed = |a: &Option<Box<Val>>, b: &Option<Box<Val>>| match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => same(x, y),
        _ => false,
    };
    match (a, b) {
        (Val::Float32(x), Val::Float32(y)) => {
            (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits()
        }
        (Val::Float64(x), Val::Float64(y)) => {
            (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits()
        }
        (Val::List(x), Val::List(y)) | (Val::Tuple(x), Val::Tuple(y)) => all(x, y),
        (Val::Record(x), Val::Record(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && same(vx, vy))
        }
        (Val::Variant(nx, px), Val::Variant(ny, py)) => nx == ny && boxed(px, py),
        (Val::Option(x), Val::Option(y)) => boxed(x, y),
        (Val::Result(Ok(x)), Val::Result(Ok(y))) | (Val::Result(Err(x)), Val::Result(Err(y))) => {
            boxed(x, y)
        }
        (Val::Flags(x), Val::Flags(y)) => {
            let mut x = x.clone();
            let mut y = y.clone();
            x.sort();
            y.sort();
            x == y
        }
        _ => a == b,
    }
}

/// Replaces one part of `j` (maybe all of it) with arbitrary JSON.
fn mutate(u: &mut Unstructured<'_>, j: &mut Json, depth: usize) -> ArbResult<()> {
    let children = match j {
        Json::Array(items) => items.len(),
        Json::Object(map) => map.len(),
        _ => 0,
    };
    if children == 0 || u.ratio(1, 3)? {
        *j = arb_json(u, depth, &[])?;
        return Ok(());
    }
    let i = u.choose_index(children)?;
    match j {
        Json::Array(items) => mutate(u, &mut items[i], depth + 1),
        Json::Object(map) => match map.values_mut().nth(i) {
            Some(v) => mutate(u, v, depth + 1),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Arbitrary JSON, leaning towards what the converter looks for: parameter
/// and case names as keys, numbers at the edges of the integer types, the
/// float spellings.
fn arb_json(u: &mut Unstructured<'_>, depth: usize, params: &[(String, Type)]) -> ArbResult<Json> {
    const STRINGS: &[&str] = &[
        "",
        "a",
        "NaN",
        "Infinity",
        "-inf",
        "ok",
        "err",
        "some",
        "c0",
        "e0",
        "g0",
        "18446744073709551616",
        "-9223372036854775809",
        " 7 ",
    ];
    const KEYS: &[&str] = &["ok", "err", "some", "c0", "c1", "a0", "a1", "p0", "p1", "x"];
    let leaf = depth >= MAX_DEPTH;
    Ok(match u.int_in_range(0..=if leaf { 4 } else { 6 })? {
        0 => Json::Null,
        1 => Json::Bool(u.arbitrary()?),
        2 => match u.int_in_range(0..=3)? {
            0 => Json::from(u.arbitrary::<i64>()?),
            1 => Json::from(u.arbitrary::<u64>()?),
            2 => Json::from(u.int_in_range(-130i64..=300)?),
            _ => serde_json::Number::from_f64(f64::from_bits(u.arbitrary()?))
                .map_or(Json::Null, Json::Number),
        },
        3 => Json::from(*u.choose(STRINGS)?),
        4 => Json::String(u.arbitrary()?),
        5 => {
            let n = u.int_in_range(0..=4)?;
            Json::Array(
                (0..n)
                    .map(|_| arb_json(u, depth + 1, &[]))
                    .collect::<ArbResult<_>>()?,
            )
        }
        _ => {
            let n = u.int_in_range(0..=3)?;
            let mut map = Map::new();
            for _ in 0..n {
                let key = match params.is_empty() {
                    false if u.arbitrary()? => u.choose(params)?.0.clone(),
                    _ => (*u.choose(KEYS)?).to_string(),
                };
                map.insert(key, arb_json(u, depth + 1, &[])?);
            }
            Json::Object(map)
        }
    })
}

/// Junk arguments: converted or refused with a `BadArgument` naming a
/// parameter (or `arguments`), never anything else; and through a real call,
/// refused or the guest reached.
fn check_junk(version: &Version, types: &[(String, Type)], args: &Json, wit: &str) {
    let names: Vec<&str> = types.iter().map(|(n, _)| n.as_str()).collect();
    let converted = json::split_args(&names, args, String::new).and_then(|values| {
        types
            .iter()
            .zip(values)
            .map(|((name, ty), v)| json::to_val(v, ty, name))
            .collect::<crate::Result<Vec<_>>>()
    });
    match &converted {
        Ok(_) => {}
        Err(Error::BadArgument { param, .. }) => assert!(
            param == "arguments"
                || names
                    .iter()
                    .any(|n| param == n || param.starts_with(&format!("{n}.")) || param.starts_with(&format!("{n}[")))
                // An unknown key in an argument object names itself.
                || args.as_object().is_some_and(|m| m.contains_key(param)),
            "`{param}` names no parameter: {args}\n{wit}"
        ),
        Err(e) => panic!("junk gave {e:?}, not BadArgument: {args}\n{wit}"),
    }
    match call(version, args) {
        Err(Error::BadArgument { .. }) if converted.is_err() => {}
        Err(e) if converted.is_ok() && reached_guest(&e) => {}
        other => panic!(
            "a call with {args} ended in {other:?}; conversion alone gave {converted:?}\n{wit}"
        ),
    }
}

fn expect_reaches_guest(version: &Version, args: &Json, wit: &str) {
    match call(version, args) {
        Err(e) if reached_guest(&e) => {}
        other => panic!("valid arguments {args} did not reach the guest: {other:?}\n{wit}"),
    }
}

/// The dummy module's export bodies and `cabi_realloc` are `unreachable`:
/// that trap, and no other error (wasmtime refusing mistyped values would
/// also be a `Trap`, without this code), means the arguments got through.
fn reached_guest(e: &Error) -> bool {
    matches!(
        e,
        Error::Trap {
            code: Some(wasmtime::Trap::UnreachableCodeReached),
            ..
        }
    )
}

/// `f(args)` through [`Version::invoke_json`], the path every JSON call takes,
/// on a runtime of its own: [`wit_json`] must not be called from async code
/// (a runtime cannot be started inside another).
fn call(version: &Version, args: &Json) -> crate::Result<Json> {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
    .block_on(version.invoke_json("f", args))
}
