//! JSON <-> WebAssembly values, driven by the function's own types.
//!
//! Component values follow the WIT types: records are objects keyed by field
//! name, tuples are arrays, variants are `{"case": payload}` (or `"case"` with
//! no payload), enums are strings, flags are arrays of names, options are
//! `null` or the value (`{"some": v}` when the value is itself an option, so
//! `some(none)` differs from `none`), results are `{"ok": v}` / `{"err": e}`. 64-bit
//! integers also accept decimal strings (JavaScript clients lose precision
//! past 2^53); floats accept `"NaN"`, `"Infinity"` and `"-Infinity"` and
//! return them for non-finite results. Every mismatch is an
//! [`Error::BadArgument`] naming the parameter path and the expected type.

use serde_json::{Map, Value as Json};
use wasmtime::component::{Type, Val};
use wasmtime::{ValType, component::types::ComponentFunc};

use crate::error::{Error, Result};

/// Splits JSON arguments (an array, an object keyed by parameter name, or
/// `null` for none) into one JSON value per parameter, in order.
pub(crate) fn split_args<'a>(
    names: &[&str],
    args: &'a Json,
    expected: impl Fn() -> String,
) -> Result<Vec<&'a Json>> {
    static NULL: Json = Json::Null;
    match args {
        Json::Null if names.is_empty() => Ok(Vec::new()),
        // A short array leaves the trailing parameters null, so a caller
        // written before an optional parameter was added keeps working.
        Json::Array(items) if items.len() <= names.len() => Ok(items
            .iter()
            .chain(std::iter::repeat(&NULL))
            .take(names.len())
            .collect()),
        Json::Array(items) => Err(Error::BadArgument {
            param: "arguments".into(),
            expected: format!("{} argument(s) {}", names.len(), expected()),
            problem: format!("got {}", items.len()),
        }),
        Json::Object(map) => {
            if let Some(unknown) = map.keys().find(|k| !names.contains(&k.as_str())) {
                return Err(Error::BadArgument {
                    param: unknown.clone(),
                    expected: format!("one of the parameters {}", expected()),
                    problem: "no parameter has this name".into(),
                });
            }
            names
                .iter()
                .map(|n| match map.get(*n) {
                    Some(v) => Ok(v),
                    // An absent key is null, so optional parameters may be left out.
                    None => Ok(&NULL),
                })
                .collect()
        }
        // A single-parameter function may take its argument bare.
        other if names.len() == 1 => Ok(vec![other]),
        other => Err(Error::BadArgument {
            param: "arguments".into(),
            expected: format!("an array or object of arguments {}", expected()),
            problem: format!("got {}", describe(other)),
        }),
    }
}

/// Converts the JSON arguments of a component function call.
pub(crate) fn component_params(ty: &ComponentFunc, args: &Json) -> Result<Vec<Val>> {
    let params: Vec<(&str, Type)> = ty.params().collect();
    let names: Vec<&str> = params.iter().map(|(n, _)| *n).collect();
    let sig = || component_signature(ty);
    let values = split_args(&names, args, sig)?;
    params
        .iter()
        .zip(values)
        .map(|((name, ty), v)| to_val(v, ty, name))
        .collect()
}

/// Converts a component function's results to JSON: `null` for none, the
/// value itself for one.
pub(crate) fn component_results(results: &[Val]) -> Result<Json> {
    match results {
        [] => Ok(Json::Null),
        [one] => from_val(one),
        many => many
            .iter()
            .map(from_val)
            .collect::<Result<Vec<_>>>()
            .map(Json::Array),
    }
}

/// Converts the JSON arguments of a core function call.
pub(crate) fn core_params(ty: &wasmtime::FuncType, args: &Json) -> Result<Vec<wasmtime::Val>> {
    let names: Vec<String> = (0..ty.params().len()).map(|i| format!("arg{i}")).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let values = split_args(&name_refs, args, || core_signature(ty))?;
    ty.params()
        .zip(values)
        .zip(&names)
        .map(|((vt, v), name)| core_val(v, &vt, name))
        .collect()
}

/// Converts a core function's results to JSON.
pub(crate) fn core_results(results: &[wasmtime::Val]) -> Result<Json> {
    let one = |v: &wasmtime::Val| -> Result<Json> {
        Ok(match v {
            wasmtime::Val::I32(x) => Json::from(*x),
            wasmtime::Val::I64(x) => Json::from(*x),
            wasmtime::Val::F32(bits) => float_json(f64::from(f32::from_bits(*bits))),
            wasmtime::Val::F64(bits) => float_json(f64::from_bits(*bits)),
            _ => {
                return Err(Error::Unrepresentable(
                    "reference and vector results have no JSON form".into(),
                ));
            }
        })
    };
    match results {
        [] => Ok(Json::Null),
        [x] => one(x),
        many => many
            .iter()
            .map(one)
            .collect::<Result<Vec<_>>>()
            .map(Json::Array),
    }
}

fn core_val(v: &Json, ty: &ValType, path: &str) -> Result<wasmtime::Val> {
    let bad = |problem: String| Error::BadArgument {
        param: path.into(),
        expected: core_type_name(ty).into(),
        problem,
    };
    Ok(match ty {
        ValType::I32 => {
            let n = json_i128(v).ok_or_else(|| bad(format!("got {}", describe(v))))?;
            // i32 carries both signed and unsigned 32-bit values.
            if !(i128::from(i32::MIN)..=i128::from(u32::MAX)).contains(&n) {
                return Err(bad(format!("{n} is out of range")));
            }
            wasmtime::Val::I32(n as i64 as i32)
        }
        ValType::I64 => {
            let n = json_i128(v).ok_or_else(|| bad(format!("got {}", describe(v))))?;
            if !(i128::from(i64::MIN)..=i128::from(u64::MAX)).contains(&n) {
                return Err(bad(format!("{n} is out of range")));
            }
            wasmtime::Val::I64(n as i64)
        }
        ValType::F32 => wasmtime::Val::F32(
            (json_f64(v).ok_or_else(|| bad(format!("got {}", describe(v))))? as f32).to_bits(),
        ),
        ValType::F64 => wasmtime::Val::F64(
            json_f64(v)
                .ok_or_else(|| bad(format!("got {}", describe(v))))?
                .to_bits(),
        ),
        _ => {
            return Err(bad(
                "reference and vector parameters cannot be passed as JSON".into(),
            ));
        }
    })
}

fn core_type_name(ty: &ValType) -> &'static str {
    match ty {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
        ValType::F32 => "f32",
        ValType::F64 => "f64",
        ValType::V128 => "v128",
        ValType::Ref(_) => "reference",
    }
}

/// `(i32, i64) -> f64`
pub(crate) fn core_signature(ty: &wasmtime::FuncType) -> String {
    let p: Vec<&str> = ty.params().map(|t| core_type_name(&t)).collect();
    let r: Vec<&str> = ty.results().map(|t| core_type_name(&t)).collect();
    format!("({}) -> ({})", p.join(", "), r.join(", "))
}

/// `func(a: u8, b: string) -> list<u8>`
pub(crate) fn component_signature(ty: &ComponentFunc) -> String {
    let params: Vec<String> = ty
        .params()
        .map(|(n, t)| format!("{n}: {}", type_name(&t)))
        .collect();
    let results: Vec<String> = ty.results().map(|t| type_name(&t)).collect();
    match results.as_slice() {
        [] => format!("func({})", params.join(", ")),
        [one] => format!("func({}) -> {one}", params.join(", ")),
        many => format!("func({}) -> tuple<{}>", params.join(", "), many.join(", ")),
    }
}

/// The WIT spelling of a type, for messages and signatures.
pub(crate) fn type_name(ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::S8 => "s8".into(),
        Type::U8 => "u8".into(),
        Type::S16 => "s16".into(),
        Type::U16 => "u16".into(),
        Type::S32 => "s32".into(),
        Type::U32 => "u32".into(),
        Type::S64 => "s64".into(),
        Type::U64 => "u64".into(),
        Type::Float32 => "f32".into(),
        Type::Float64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::List(l) => format!("list<{}>", type_name(&l.ty())),
        Type::FixedLengthList(l) => format!("list<{}, N>", type_name(&l.ty())),
        Type::Map(m) => format!("map<{}, {}>", type_name(&m.key()), type_name(&m.value())),
        Type::Record(r) => {
            let fields: Vec<String> = r
                .fields()
                .map(|f| format!("{}: {}", f.name, type_name(&f.ty)))
                .collect();
            format!("record {{ {} }}", fields.join(", "))
        }
        Type::Tuple(t) => {
            let items: Vec<String> = t.types().map(|t| type_name(&t)).collect();
            format!("tuple<{}>", items.join(", "))
        }
        Type::Variant(v) => {
            let cases: Vec<String> = v
                .cases()
                .map(|c| match c.ty {
                    Some(t) => format!("{}({})", c.name, type_name(&t)),
                    None => c.name.to_string(),
                })
                .collect();
            format!("variant {{ {} }}", cases.join(", "))
        }
        Type::Enum(e) => format!("enum {{ {} }}", e.names().collect::<Vec<_>>().join(", ")),
        Type::Option(o) => format!("option<{}>", type_name(&o.ty())),
        Type::Result(r) => {
            let side = |t: Option<Type>| t.map_or("_".to_string(), |t| type_name(&t));
            format!("result<{}, {}>", side(r.ok()), side(r.err()))
        }
        Type::Flags(f) => format!("flags {{ {} }}", f.names().collect::<Vec<_>>().join(", ")),
        Type::Own(_) => "own<resource>".into(),
        Type::Borrow(_) => "borrow<resource>".into(),
        Type::Future(_) => "future".into(),
        Type::Stream(_) => "stream".into(),
        Type::ErrorContext => "error-context".into(),
    }
}

/// A short description of a JSON value for error messages.
fn describe(v: &Json) -> String {
    match v {
        Json::Null => "null".into(),
        Json::Bool(b) => format!("boolean {b}"),
        Json::Number(n) => format!("number {n}"),
        Json::String(s) if s.len() > 40 => format!("a string of {} bytes", s.len()),
        Json::String(s) => format!("string {s:?}"),
        Json::Array(a) => format!("an array of {} item(s)", a.len()),
        Json::Object(_) => "an object".into(),
    }
}

fn json_i128(v: &Json) -> Option<i128> {
    match v {
        Json::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            // 3.0 is an integer; 3.5 is not.
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 1e38)
                    .map(|f| f as i128)
            }),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn json_f64(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" | "inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

fn float_json(f: f64) -> Json {
    if f.is_nan() {
        Json::from("NaN")
    } else if f.is_infinite() {
        Json::from(if f > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        Json::from(f)
    }
}

fn int<T: TryFrom<i128>>(v: &Json, ty: &Type, path: &str) -> Result<T> {
    let n = json_i128(v).ok_or_else(|| mismatch(v, ty, path))?;
    T::try_from(n).map_err(|_| Error::BadArgument {
        param: path.into(),
        expected: type_name(ty),
        problem: format!("{n} is out of range"),
    })
}

fn mismatch(v: &Json, ty: &Type, path: &str) -> Error {
    Error::BadArgument {
        param: path.into(),
        expected: type_name(ty),
        problem: format!("got {}", describe(v)),
    }
}

/// Converts one JSON value to a component value of type `ty`; `path` names it
/// in errors.
pub(crate) fn to_val(v: &Json, ty: &Type, path: &str) -> Result<Val> {
    let err = || mismatch(v, ty, path);
    Ok(match ty {
        Type::Bool => Val::Bool(v.as_bool().ok_or_else(err)?),
        Type::S8 => Val::S8(int(v, ty, path)?),
        Type::U8 => Val::U8(int(v, ty, path)?),
        Type::S16 => Val::S16(int(v, ty, path)?),
        Type::U16 => Val::U16(int(v, ty, path)?),
        Type::S32 => Val::S32(int(v, ty, path)?),
        Type::U32 => Val::U32(int(v, ty, path)?),
        Type::S64 => Val::S64(int(v, ty, path)?),
        Type::U64 => Val::U64(int(v, ty, path)?),
        Type::Float32 => Val::Float32(json_f64(v).ok_or_else(err)? as f32),
        Type::Float64 => Val::Float64(json_f64(v).ok_or_else(err)?),
        Type::Char => {
            let s = v.as_str().ok_or_else(err)?;
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Val::Char(c),
                _ => {
                    return Err(Error::BadArgument {
                        param: path.into(),
                        expected: "char".into(),
                        problem: format!("got a string of {} characters", s.chars().count()),
                    });
                }
            }
        }
        Type::String => Val::String(v.as_str().ok_or_else(err)?.to_string()),
        Type::List(l) => Val::List(list_items(v.as_array().ok_or_else(err)?, &l.ty(), path)?),
        Type::FixedLengthList(l) => {
            Val::FixedLengthList(list_items(v.as_array().ok_or_else(err)?, &l.ty(), path)?)
        }
        Type::Record(r) => {
            let obj = v.as_object().ok_or_else(err)?;
            let fields: Vec<_> = r.fields().collect();
            if let Some(unknown) = obj
                .keys()
                .find(|k| !fields.iter().any(|f| f.name == k.as_str()))
            {
                return Err(Error::BadArgument {
                    param: format!("{path}.{unknown}"),
                    expected: type_name(ty),
                    problem: "the record has no such field".into(),
                });
            }
            let mut out = Vec::with_capacity(fields.len());
            for f in fields {
                let fpath = format!("{path}.{}", f.name);
                let fv = match obj.get(f.name) {
                    Some(fv) => to_val(fv, &f.ty, &fpath)?,
                    None if matches!(f.ty, Type::Option(_)) => Val::Option(None),
                    None => {
                        return Err(Error::BadArgument {
                            param: fpath,
                            expected: type_name(&f.ty),
                            problem: "the field is missing".into(),
                        });
                    }
                };
                out.push((f.name.to_string(), fv));
            }
            Val::Record(out)
        }
        Type::Tuple(t) => {
            let items = v.as_array().ok_or_else(err)?;
            let types: Vec<Type> = t.types().collect();
            if items.len() != types.len() {
                return Err(Error::BadArgument {
                    param: path.into(),
                    expected: type_name(ty),
                    problem: format!("got {} item(s)", items.len()),
                });
            }
            Val::Tuple(
                items
                    .iter()
                    .zip(&types)
                    .enumerate()
                    .map(|(i, (item, t))| to_val(item, t, &format!("{path}.{i}")))
                    .collect::<Result<_>>()?,
            )
        }
        Type::Variant(var) => {
            let (name, payload) = case_of(v).ok_or_else(err)?;
            let case = var
                .cases()
                .find(|c| c.name == name)
                .ok_or_else(|| Error::BadArgument {
                    param: path.into(),
                    expected: type_name(ty),
                    problem: format!("no case named {name:?}"),
                })?;
            let payload = match (case.ty, payload) {
                (None, None) => None,
                (Some(t), Some(p)) => Some(Box::new(to_val(p, &t, &format!("{path}.{name}"))?)),
                (Some(t), None) => {
                    return Err(Error::BadArgument {
                        param: format!("{path}.{name}"),
                        expected: type_name(&t),
                        problem: "the case needs a payload: write {\"case\": value}".into(),
                    });
                }
                (None, Some(_)) => {
                    return Err(Error::BadArgument {
                        param: format!("{path}.{name}"),
                        expected: "no payload".into(),
                        problem: "the case carries no value".into(),
                    });
                }
            };
            Val::Variant(name.to_string(), payload)
        }
        Type::Enum(e) => {
            let s = v.as_str().ok_or_else(err)?;
            if !e.names().any(|n| n == s) {
                return Err(Error::BadArgument {
                    param: path.into(),
                    expected: type_name(ty),
                    problem: format!("no case named {s:?}"),
                });
            }
            Val::Enum(s.to_string())
        }
        Type::Option(o) => match (v, o.ty()) {
            (Json::Null, _) => Val::Option(None),
            // option<option<T>>: `{"some": x}` is `some(x)`, so `some(none)`
            // (`{"some": null}`) can be told from `none`. Any other bare
            // value is also `some`; a one-key object `{"some": …}` is always
            // the wrapper, so an inner value of that shape must be wrapped.
            (some, inner @ Type::Option(_)) => {
                let payload = match some {
                    Json::Object(map) if map.len() == 1 => map.get("some").unwrap_or(some),
                    _ => some,
                };
                Val::Option(Some(Box::new(to_val(payload, &inner, path)?)))
            }
            (some, inner) => Val::Option(Some(Box::new(to_val(some, &inner, path)?))),
        },
        Type::Result(r) => {
            let (name, payload) = case_of(v).ok_or_else(err)?;
            let side = |t: Option<Type>, label: &str| -> Result<Option<Box<Val>>> {
                match (t, payload) {
                    (Some(t), Some(p)) => {
                        Ok(Some(Box::new(to_val(p, &t, &format!("{path}.{label}"))?)))
                    }
                    (None, None | Some(Json::Null)) => Ok(None),
                    (Some(t), None) => Err(Error::BadArgument {
                        param: format!("{path}.{label}"),
                        expected: type_name(&t),
                        problem: "missing value".into(),
                    }),
                    (None, Some(_)) => Err(Error::BadArgument {
                        param: format!("{path}.{label}"),
                        expected: "no value".into(),
                        problem: "this side of the result carries no value".into(),
                    }),
                }
            };
            match name {
                "ok" => Val::Result(Ok(side(r.ok(), "ok")?)),
                "err" => Val::Result(Err(side(r.err(), "err")?)),
                other => {
                    return Err(Error::BadArgument {
                        param: path.into(),
                        expected: type_name(ty),
                        problem: format!(
                            "expected {{\"ok\": …}} or {{\"err\": …}}, got case {other:?}"
                        ),
                    });
                }
            }
        }
        Type::Flags(f) => {
            let items = v.as_array().ok_or_else(err)?;
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let name = item
                    .as_str()
                    .ok_or_else(|| mismatch(item, ty, &format!("{path}[{i}]")))?;
                if !f.names().any(|n| n == name) {
                    return Err(Error::BadArgument {
                        param: format!("{path}[{i}]"),
                        expected: type_name(ty),
                        problem: format!("no flag named {name:?}"),
                    });
                }
                if !out.iter().any(|o: &String| o == name) {
                    out.push(name.to_string());
                }
            }
            Val::Flags(out)
        }
        Type::Map(m) => {
            let obj = v.as_object().ok_or_else(err)?;
            let (kt, vt) = (m.key(), m.value());
            Val::Map(
                obj.iter()
                    .map(|(k, item)| {
                        Ok((
                            to_val(&Json::from(k.as_str()), &kt, path)?,
                            to_val(item, &vt, &format!("{path}.{k}"))?,
                        ))
                    })
                    .collect::<Result<_>>()?,
            )
        }
        Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            return Err(Error::BadArgument {
                param: path.into(),
                expected: type_name(ty),
                problem: "handles cannot be passed as JSON".into(),
            });
        }
    })
}

/// Converts every element of a JSON array, naming each `path[i]` in errors.
fn list_items(items: &[Json], elem: &Type, path: &str) -> Result<Vec<Val>> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| to_val(item, elem, &format!("{path}[{i}]")))
        .collect()
}

/// `"name"` or `{"name": payload}`.
fn case_of(v: &Json) -> Option<(&str, Option<&Json>)> {
    match v {
        Json::String(s) => Some((s.as_str(), None)),
        Json::Object(map) if map.len() == 1 => {
            map.iter().next().map(|(k, p)| (k.as_str(), Some(p)))
        }
        _ => None,
    }
}

/// Converts a component value to JSON.
pub(crate) fn from_val(v: &Val) -> Result<Json> {
    Ok(match v {
        Val::Bool(b) => Json::Bool(*b),
        Val::S8(x) => Json::from(*x),
        Val::U8(x) => Json::from(*x),
        Val::S16(x) => Json::from(*x),
        Val::U16(x) => Json::from(*x),
        Val::S32(x) => Json::from(*x),
        Val::U32(x) => Json::from(*x),
        Val::S64(x) => Json::from(*x),
        Val::U64(x) => Json::from(*x),
        Val::Float32(x) => float_json(f64::from(*x)),
        Val::Float64(x) => float_json(*x),
        Val::Char(c) => Json::String(c.to_string()),
        Val::String(s) => Json::String(s.clone()),
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
            Json::Array(items.iter().map(from_val).collect::<Result<_>>()?)
        }
        Val::Record(fields) => {
            let mut map = Map::new();
            for (k, fv) in fields {
                map.insert(k.clone(), from_val(fv)?);
            }
            Json::Object(map)
        }
        Val::Variant(name, None) | Val::Enum(name) => Json::String(name.clone()),
        Val::Variant(name, Some(p)) => single(name, from_val(p)?),
        Val::Option(None) => Json::Null,
        // Around an inner option a bare `null` would be ambiguous.
        Val::Option(Some(x)) if matches!(**x, Val::Option(_)) => single("some", from_val(x)?),
        Val::Option(Some(x)) => from_val(x)?,
        Val::Result(Ok(x)) => single(
            "ok",
            x.as_deref()
                .map(from_val)
                .transpose()?
                .unwrap_or(Json::Null),
        ),
        Val::Result(Err(x)) => single(
            "err",
            x.as_deref()
                .map(from_val)
                .transpose()?
                .unwrap_or(Json::Null),
        ),
        Val::Flags(names) => Json::Array(names.iter().map(|n| Json::String(n.clone())).collect()),
        Val::Map(pairs) => {
            let mut map = Map::new();
            for (k, mv) in pairs {
                let key = match from_val(k)? {
                    Json::String(s) => s,
                    other => other.to_string(),
                };
                map.insert(key, from_val(mv)?);
            }
            Json::Object(map)
        }
        Val::Resource(_) | Val::Future(_) | Val::Stream(_) | Val::ErrorContext(_) => {
            return Err(Error::Unrepresentable(
                "handles cannot be returned as JSON".into(),
            ));
        }
    })
}

fn single(key: &str, v: Json) -> Json {
    let mut map = Map::new();
    map.insert(key.to_string(), v);
    Json::Object(map)
}
