//! A table of WIT pairs, one change each (and a few mixed), with the
//! classification each must get.
//!
//! Bodies without a `package` line are wrapped as
//! `package t:c@1.0.0; interface api { … }`, and an expected path starting
//! with `#` is relative to `t:c/api@1.0.0`.

use wasmswap_core::wit::{self, Verdict};

use super::pkg;

const OK: Verdict = Verdict::Compatible;
const BREAK: Verdict = Verdict::Breaking;

struct Pair {
    name: &'static str,
    old: &'static str,
    new: &'static str,
    /// (path, change, callers, implementers, abi_breaking)
    expect: &'static [(&'static str, &'static str, Verdict, Verdict, bool)],
}

const fn pair(
    name: &'static str,
    old: &'static str,
    new: &'static str,
    expect: &'static [(&'static str, &'static str, Verdict, Verdict, bool)],
) -> Pair {
    Pair {
        name,
        old,
        new,
        expect,
    }
}

const CORPUS: &[Pair] = &[
    // --- functions -------------------------------------------------------
    pair(
        "function added",
        "f: func();",
        "f: func(); g: func();",
        &[("#g", "function-added", OK, BREAK, false)],
    ),
    pair(
        "function removed",
        "f: func(); g: func();",
        "f: func();",
        &[("#g", "function-removed", BREAK, OK, false)],
    ),
    pair(
        "param added",
        "f: func(a: u32);",
        "f: func(a: u32, b: u32);",
        &[("#f", "param-added", BREAK, BREAK, true)],
    ),
    pair(
        "optional param added",
        "f: func(a: u32);",
        "f: func(a: u32, b: option<u32>);",
        &[("#f", "param-added", OK, BREAK, true)],
    ),
    pair(
        "param removed",
        "f: func(a: u32, b: u32);",
        "f: func(a: u32);",
        &[("#f", "param-removed", BREAK, BREAK, true)],
    ),
    pair(
        "optional param removed",
        "f: func(a: u32, b: option<u32>);",
        "f: func(a: u32);",
        &[("#f", "param-removed", BREAK, OK, true)],
    ),
    pair(
        "param widened",
        "f: func(a: u8);",
        "f: func(a: u32);",
        &[("#f", "param-type-changed", OK, BREAK, true)],
    ),
    pair(
        "param narrowed",
        "f: func(a: u32);",
        "f: func(a: u8);",
        &[("#f", "param-type-changed", BREAK, OK, true)],
    ),
    pair(
        "param retyped",
        "f: func(a: string);",
        "f: func(a: u32);",
        &[("#f", "param-type-changed", BREAK, BREAK, true)],
    ),
    pair(
        "signed param widened",
        "f: func(a: s16);",
        "f: func(a: s64);",
        &[("#f", "param-type-changed", OK, BREAK, true)],
    ),
    pair(
        "unsigned to signed",
        "f: func(a: u32);",
        "f: func(a: s32);",
        &[("#f", "param-type-changed", BREAK, BREAK, true)],
    ),
    pair(
        "params reordered",
        "f: func(a: u32, b: string);",
        "f: func(b: string, a: u32);",
        &[("#f", "params-reordered", BREAK, BREAK, true)],
    ),
    pair(
        "result added",
        "f: func();",
        "f: func() -> u32;",
        &[("#f", "result-added", OK, BREAK, true)],
    ),
    pair(
        "result removed",
        "f: func() -> u32;",
        "f: func();",
        &[("#f", "result-removed", BREAK, OK, true)],
    ),
    pair(
        "result widened",
        "f: func() -> u8;",
        "f: func() -> u32;",
        &[("#f", "result-type-changed", BREAK, OK, true)],
    ),
    pair(
        "result narrowed",
        "f: func() -> f64;",
        "f: func() -> f32;",
        &[("#f", "result-type-changed", OK, BREAK, true)],
    ),
    pair(
        "param made optional",
        "f: func(a: u32);",
        "f: func(a: option<u32>);",
        &[("#f", "param-type-changed", OK, BREAK, true)],
    ),
    pair(
        "result made required",
        "f: func() -> option<u32>;",
        "f: func() -> u32;",
        &[("#f", "result-type-changed", OK, BREAK, true)],
    ),
    pair(
        "method became static",
        "resource r { m: func(); }",
        "resource r { m: static func(); }",
        &[("#r.m", "function-kind-changed", BREAK, BREAK, true)],
    ),
    // --- records ---------------------------------------------------------
    pair(
        "field added (argument)",
        "record p { x: u32 } f: func(p: p);",
        "record p { x: u32, y: u32 } f: func(p: p);",
        &[("#p.y", "field-added", BREAK, BREAK, true)],
    ),
    pair(
        "optional field added (argument)",
        "record p { x: u32 } f: func(p: p);",
        "record p { x: u32, y: option<u32> } f: func(p: p);",
        &[("#p.y", "field-added", OK, BREAK, true)],
    ),
    pair(
        "field added (result)",
        "record p { x: u32 } f: func() -> p;",
        "record p { x: u32, y: u32 } f: func() -> p;",
        &[("#p.y", "field-added", OK, BREAK, true)],
    ),
    pair(
        "optional field added (result)",
        "record p { x: u32 } f: func() -> p;",
        "record p { x: u32, y: option<u32> } f: func() -> p;",
        &[("#p.y", "field-added", OK, OK, true)],
    ),
    pair(
        "field removed (argument)",
        "record p { x: u32, y: u32 } f: func(p: p);",
        "record p { x: u32 } f: func(p: p);",
        &[("#p.y", "field-removed", BREAK, BREAK, true)],
    ),
    pair(
        "field removed (result)",
        "record p { x: u32, y: u32 } f: func() -> p;",
        "record p { x: u32 } f: func() -> p;",
        &[("#p.y", "field-removed", BREAK, OK, true)],
    ),
    pair(
        "optional field removed (result)",
        "record p { x: u32, y: option<u32> } f: func() -> p;",
        "record p { x: u32 } f: func() -> p;",
        &[("#p.y", "field-removed", OK, OK, true)],
    ),
    pair(
        "field widened (argument)",
        "record p { x: u32 } f: func(p: p);",
        "record p { x: u64 } f: func(p: p);",
        &[("#p.x", "field-type-changed", OK, BREAK, true)],
    ),
    pair(
        "field retyped (both ways)",
        "record p { x: u32 } f: func(p: p) -> p;",
        "record p { x: string } f: func(p: p) -> p;",
        &[("#p.x", "field-type-changed", BREAK, BREAK, true)],
    ),
    pair(
        "fields reordered",
        "record p { x: u32, y: string } f: func(p: p) -> p;",
        "record p { y: string, x: u32 } f: func(p: p) -> p;",
        &[("#p", "fields-reordered", OK, OK, true)],
    ),
    pair(
        "field renamed",
        "record p { x: u32 } f: func() -> p;",
        "record p { z: u32 } f: func() -> p;",
        &[
            ("#p.x", "field-removed", BREAK, OK, true),
            ("#p.z", "field-added", OK, BREAK, true),
        ],
    ),
    // --- variants, enums, flags -----------------------------------------
    pair(
        "case added (result)",
        "variant e { a, b(u32) } f: func() -> e;",
        "variant e { a, b(u32), c(string) } f: func() -> e;",
        &[("#e.c", "case-added", BREAK, OK, true)],
    ),
    pair(
        "case added (argument)",
        "variant e { a, b(u32) } f: func(e: e);",
        "variant e { a, b(u32), c } f: func(e: e);",
        &[("#e.c", "case-added", OK, BREAK, true)],
    ),
    pair(
        "case removed (argument)",
        "variant e { a, b(u32) } f: func(e: e);",
        "variant e { a } f: func(e: e);",
        &[("#e.b", "case-removed", BREAK, OK, true)],
    ),
    pair(
        "case payload widened (result)",
        "variant e { a(u8) } f: func() -> e;",
        "variant e { a(u16) } f: func() -> e;",
        &[("#e.a", "case-payload-changed", BREAK, OK, true)],
    ),
    pair(
        "case payload added (argument)",
        "variant e { a } f: func(e: e);",
        "variant e { a(u32) } f: func(e: e);",
        &[("#e.a", "case-payload-changed", BREAK, BREAK, true)],
    ),
    pair(
        "cases reordered",
        "variant e { a, b(u32) } f: func(e: e);",
        "variant e { b(u32), a } f: func(e: e);",
        &[("#e", "cases-reordered", OK, OK, true)],
    ),
    pair(
        "enum case added (both ways)",
        "enum color { red, green } f: func(c: color) -> color;",
        "enum color { red, green, blue } f: func(c: color) -> color;",
        &[("#color.blue", "case-added", BREAK, BREAK, true)],
    ),
    pair(
        "enum case removed (result)",
        "enum color { red, green } f: func() -> color;",
        "enum color { red } f: func() -> color;",
        &[("#color.green", "case-removed", OK, BREAK, true)],
    ),
    pair(
        "flag added (argument)",
        "flags perms { read, write } f: func(p: perms);",
        "flags perms { read, write, exec } f: func(p: perms);",
        &[("#perms.exec", "flag-added", OK, BREAK, true)],
    ),
    pair(
        "flag removed (result)",
        "flags perms { read, write } f: func() -> perms;",
        "flags perms { read } f: func() -> perms;",
        &[("#perms.write", "flag-removed", OK, BREAK, true)],
    ),
    pair(
        "flags reordered",
        "flags perms { read, write } f: func() -> perms;",
        "flags perms { write, read } f: func() -> perms;",
        &[("#perms", "flags-reordered", OK, OK, true)],
    ),
    // --- option, result, list, tuple --------------------------------------
    pair(
        "option payload widened (argument)",
        "type t = option<u8>; f: func(t: t);",
        "type t = option<u16>; f: func(t: t);",
        &[("#t", "type-changed", OK, BREAK, true)],
    ),
    pair(
        "result error retyped (result)",
        "type t = result<u32, string>; f: func() -> t;",
        "type t = result<u32, u32>; f: func() -> t;",
        &[("#t", "type-changed", BREAK, BREAK, true)],
    ),
    pair(
        "result ok payload added (result)",
        "type t = result<_, string>; f: func() -> t;",
        "type t = result<u32, string>; f: func() -> t;",
        &[("#t", "type-changed", BREAK, BREAK, true)],
    ),
    pair(
        "list element widened (result)",
        "type t = list<u8>; f: func() -> t;",
        "type t = list<u32>; f: func() -> t;",
        &[("#t", "type-changed", BREAK, OK, true)],
    ),
    pair(
        "tuple grew (argument)",
        "type t = tuple<u32, u32>; f: func(t: t);",
        "type t = tuple<u32, u32, u32>; f: func(t: t);",
        &[("#t", "type-changed", BREAK, BREAK, true)],
    ),
    pair(
        "inline list param widened",
        "f: func(xs: list<u8>);",
        "f: func(xs: list<u64>);",
        &[("#f", "param-type-changed", OK, BREAK, true)],
    ),
    // --- aliases and `use` ------------------------------------------------
    pair(
        "used record gained a field",
        "package t:c@1.0.0; interface base { record point { x: u32 } } interface api { use base.{point}; f: func(p: point); }",
        "package t:c@1.0.0; interface base { record point { x: u32, y: u32 } } interface api { use base.{point}; f: func(p: point); }",
        &[("t:c/base@1.0.0#point.y", "field-added", BREAK, BREAK, true)],
    ),
    pair(
        "alias retargeted",
        "type id = u32; f: func(i: id);",
        "type id = u64; f: func(i: id);",
        &[("#id", "type-changed", OK, BREAK, true)],
    ),
    pair(
        "alias to same shape",
        "type a = string; type b = string; f: func(x: a);",
        "type a = string; type b = string; f: func(x: b);",
        &[("#f", "param-type-changed", OK, OK, false)],
    ),
    // --- resources --------------------------------------------------------
    pair(
        "method added",
        "resource r { m: func(); }",
        "resource r { m: func(); n: func() -> u32; }",
        &[("#r.n", "function-added", OK, BREAK, false)],
    ),
    pair(
        "constructor removed",
        "resource r { constructor(x: u32); }",
        "resource r { }",
        &[("#r.constructor", "function-removed", BREAK, OK, false)],
    ),
    pair(
        "static added",
        "resource r { }",
        "resource r { make: static func() -> r; }",
        &[("#r.make", "function-added", OK, BREAK, false)],
    ),
    pair(
        "own became borrow",
        "resource r; f: func(x: r);",
        "resource r; f: func(x: borrow<r>);",
        &[("#f", "param-type-changed", BREAK, BREAK, true)],
    ),
    // --- worlds -----------------------------------------------------------
    pair(
        "world export added",
        "package t:c@1.0.0; interface a { f: func(); } interface b { g: func(); } world w { export a; }",
        "package t:c@1.0.0; interface a { f: func(); } interface b { g: func(); } world w { export a; export b; }",
        &[("t:c/w@1.0.0#t:c/b", "export-added", OK, BREAK, false)],
    ),
    pair(
        "world export removed",
        "package t:c@1.0.0; interface a { f: func(); } interface b { g: func(); } world w { export a; export b; }",
        "package t:c@1.0.0; interface a { f: func(); } interface b { g: func(); } world w { export a; }",
        &[("t:c/w@1.0.0#t:c/b", "export-removed", BREAK, OK, false)],
    ),
    pair(
        "world import added",
        "package t:c@1.0.0; interface a { f: func(); } world w { export run: func(); }",
        "package t:c@1.0.0; interface a { f: func(); } world w { import a; export run: func(); }",
        &[("t:c/w@1.0.0#t:c/a", "import-added", BREAK, OK, false)],
    ),
    pair(
        "world import removed",
        "package t:c@1.0.0; interface a { f: func(); } world w { import a; export run: func(); }",
        "package t:c@1.0.0; interface a { f: func(); } world w { export run: func(); }",
        &[("t:c/w@1.0.0#t:c/a", "import-removed", OK, BREAK, false)],
    ),
    pair(
        "world export function param widened",
        "package t:c@1.0.0; world w { export run: func(x: u8); }",
        "package t:c@1.0.0; world w { export run: func(x: u32); }",
        &[("t:c/w@1.0.0#run", "param-type-changed", OK, BREAK, true)],
    ),
    pair(
        "world import function param widened (roles swap)",
        "package t:c@1.0.0; world w { import log: func(x: u8); export run: func(); }",
        "package t:c@1.0.0; world w { import log: func(x: u32); export run: func(); }",
        &[("t:c/w@1.0.0#log", "param-type-changed", BREAK, OK, true)],
    ),
    // --- @since / @unstable / @deprecated --------------------------------
    pair(
        "unstable function added",
        "f: func();",
        "f: func(); @unstable(feature = preview) g: func();",
        &[("#g", "function-added", OK, OK, false)],
    ),
    pair(
        "unstable function changed",
        "@unstable(feature = preview) g: func(a: u32);",
        "@unstable(feature = preview) g: func(a: string);",
        &[("#g", "param-type-changed", OK, OK, true)],
    ),
    pair(
        "function stabilized",
        "@unstable(feature = preview) g: func();",
        "@since(version = 1.0.0) g: func();",
        &[("#g", "stabilized", OK, OK, false)],
    ),
    pair(
        "function deprecated",
        "@since(version = 1.0.0) g: func();",
        "@since(version = 1.0.0) @deprecated(version = 1.0.0) g: func();",
        &[("#g", "deprecated", OK, OK, false)],
    ),
    pair(
        "function made unstable",
        "@since(version = 1.0.0) g: func();",
        "@unstable(feature = preview) g: func();",
        &[("#g", "made-unstable", BREAK, OK, false)],
    ),
    // --- packages ---------------------------------------------------------
    pair(
        "interface added",
        "package t:c@1.0.0; interface api { f: func(); }",
        "package t:c@1.0.0; interface api { f: func(); } interface extra { g: func(); }",
        &[("t:c/extra@1.0.0", "interface-added", OK, OK, false)],
    ),
    pair(
        "interface removed",
        "package t:c@1.0.0; interface api { f: func(); } interface extra { g: func(); }",
        "package t:c@1.0.0; interface api { f: func(); }",
        &[("t:c/extra@1.0.0", "interface-removed", BREAK, OK, false)],
    ),
    pair(
        "unused type added",
        "f: func();",
        "f: func(); record spare { x: u32 }",
        &[("#spare", "type-added", OK, OK, false)],
    ),
    pair(
        "unused enum case added (judged both ways)",
        "enum level { low } f: func();",
        "enum level { low, high } f: func();",
        &[("#level.high", "case-added", BREAK, BREAK, true)],
    ),
    // --- found in review ----------------------------------------------------
    pair(
        "inline interface resource method added",
        "package t:c@1.0.0; world w { import h: interface { resource c { m: func(); } open: func() -> c; } export run: func(); }",
        "package t:c@1.0.0; world w { import h: interface { resource c { m: func(); n: func(); } open: func() -> c; } export run: func(); }",
        &[("t:c/w@1.0.0#h.c.n", "function-added", BREAK, OK, false)],
    ),
    pair(
        "unstable users do not decide a stable type's verdict",
        "record p { x: u32 } h: func() -> p; @unstable(feature = f) g: func(p: p);",
        "record p { x: u32, y: u32 } h: func() -> p; @unstable(feature = f) g: func(p: p);",
        &[("#p.y", "field-added", OK, BREAK, true)],
    ),
    pair(
        "world import made unstable",
        "package t:c@1.0.0; interface a { f: func(); } world w { import a; export run: func(); }",
        "package t:c@1.0.0; interface a { f: func(); } world w { @unstable(feature = x) import a; export run: func(); }",
        &[("t:c/w@1.0.0#t:c/a", "made-unstable", OK, BREAK, false)],
    ),
    pair(
        "a changed type is judged once, where it changed",
        "record p { x: u32 } f: func(a: p);",
        "record p { x: u32, y: u32 } f: func(a: option<p>);",
        &[
            ("#f", "param-type-changed", OK, BREAK, true),
            ("#p.y", "field-added", BREAK, BREAK, true),
        ],
    ),
    pair(
        "one of two imported versions dropped",
        "package t:c@1.0.0; world w { import d:x/i@1.0.0; import d:x/i@2.0.0; export run: func(); } package d:x@1.0.0 { interface i { f: func(); } } package d:x@2.0.0 { interface i { f: func(); } }",
        "package t:c@1.0.0; world w { import d:x/i@2.0.0; export run: func(); } package d:x@1.0.0 { interface i { f: func(); } } package d:x@2.0.0 { interface i { f: func(); } }",
        &[(
            "t:c/w@1.0.0#d:x/i@1.0.0",
            "import-removed",
            OK,
            BREAK,
            false,
        )],
    ),
    // --- mixed ------------------------------------------------------------
    pair(
        "mixed: additive release",
        "record q { id: u64 } get: func(q: q) -> string;",
        "record q { id: u64, limit: option<u32> } get: func(q: q) -> string; put: func(v: string);",
        &[
            ("#put", "function-added", OK, BREAK, false),
            ("#q.limit", "field-added", OK, BREAK, true),
        ],
    ),
    pair(
        "mixed: function renamed",
        "fetch: func(url: string) -> list<u8>;",
        "get: func(url: string) -> list<u8>;",
        &[
            ("#fetch", "function-removed", BREAK, OK, false),
            ("#get", "function-added", OK, BREAK, false),
        ],
    ),
    pair(
        "mixed: variant case swapped",
        "variant shape { circle(f32), square(f32) } area: func(s: shape) -> f32;",
        "variant shape { circle(f32), triangle(tuple<f32, f32>) } area: func(s: shape) -> f32;",
        &[
            ("#shape.square", "case-removed", BREAK, OK, true),
            ("#shape.triangle", "case-added", OK, BREAK, true),
        ],
    ),
    pair(
        "mixed: nothing changed but comments",
        "/// old docs\nf: func(a: u32) -> u32;",
        "/// new docs\nf: func(a: u32) -> u32;",
        &[],
    ),
];

fn wrap(body: &str) -> String {
    if body.trim_start().starts_with("package") {
        body.to_string()
    } else {
        format!("package t:c@1.0.0;\ninterface api {{\n{body}\n}}\n")
    }
}

fn full_path(p: &str) -> String {
    match p.strip_prefix('#') {
        Some(rest) => format!("t:c/api@1.0.0#{rest}"),
        None => p.to_string(),
    }
}

#[test]
fn corpus_classifies_every_pair() {
    assert!(CORPUS.len() >= 40, "the corpus has {} pairs", CORPUS.len());
    let single = CORPUS.iter().filter(|p| p.expect.len() == 1).count();
    assert!(single >= 40, "{single} single-change pairs");
    let mut failures = Vec::new();
    for case in CORPUS {
        let diff = wit::diff_packages(&pkg(&wrap(case.old)), &pkg(&wrap(case.new)));
        let got: Vec<(String, String, Verdict, Verdict, bool)> = diff
            .changes
            .iter()
            .map(|c| {
                let kind = serde_json::to_value(&c.kind).unwrap()["change"]
                    .as_str()
                    .unwrap()
                    .to_string();
                (
                    c.path.clone(),
                    kind,
                    c.callers,
                    c.implementers,
                    c.abi_breaking,
                )
            })
            .collect();
        let mut want: Vec<(String, String, Verdict, Verdict, bool)> = case
            .expect
            .iter()
            .map(|(p, k, c, i, a)| (full_path(p), k.to_string(), *c, *i, *a))
            .collect();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        if got != want {
            failures.push(format!(
                "{}:\n  want {want:?}\n  got  {got:?}\n{diff}",
                case.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} pairs misclassified:\n{}",
        failures.len(),
        CORPUS.len(),
        failures.join("\n")
    );
}

#[test]
fn every_corpus_diff_is_empty_against_itself() {
    for case in CORPUS {
        for text in [case.old, case.new] {
            let p = pkg(&wrap(text));
            let diff = wit::diff_packages(&p, &p);
            assert!(diff.is_empty(), "{}: {diff}", case.name);
        }
    }
}
