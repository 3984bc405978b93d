//! Properties over generated WIT: a package diffed with itself is empty;
//! adding an export never breaks callers; removing one always does; and
//! reversing a diff swaps whom it breaks.

use proptest::prelude::*;
use wasmswap_core::wit::{self, ChangeKind, Verdict};

use super::pkg;

/// Named types every generated interface defines, so functions can use them.
const TYPES: &str = "
    record rec { a: u32, b: string, c: option<list<u8>> }
    enum col { red, green, blue }
    flags perm { r, w, x }
    variant shape { circle(f64), rect(tuple<f64, f64>), empty }
    resource res { constructor(x: u32); get: func() -> u32; }
    type alias = list<rec>;
";

fn ty() -> impl Strategy<Value = String> {
    let prim = prop::sample::select(vec![
        "bool", "u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "f32", "f64", "char",
        "string",
    ])
    .prop_map(str::to_string);
    let named = prop::sample::select(vec!["rec", "col", "perm", "shape", "res", "alias"])
        .prop_map(str::to_string);
    let leaf = prop_oneof![3 => prim, 2 => named];
    leaf.prop_recursive(2, 8, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|t| format!("list<{t}>")),
            inner.clone().prop_map(|t| format!("option<{t}>")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("result<{a}, {b}>")),
            inner.clone().prop_map(|t| format!("result<_, {t}>")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("tuple<{a}, {b}>")),
        ]
    })
}

#[derive(Debug, Clone)]
struct Func {
    params: Vec<String>,
    result: Option<String>,
}

/// A parameter may also borrow a resource (results may not).
fn param_ty() -> impl Strategy<Value = String> {
    prop_oneof![8 => ty(), 1 => Just("borrow<res>".to_string())]
}

fn func() -> impl Strategy<Value = Func> {
    (
        prop::collection::vec(param_ty(), 0..4),
        prop::option::of(ty()),
    )
        .prop_map(|(params, result)| Func { params, result })
}

fn render_fn(name: &str, f: &Func) -> String {
    let params: Vec<String> = f
        .params
        .iter()
        .enumerate()
        .map(|(i, t)| format!("p{i}: {t}"))
        .collect();
    let result = f
        .result
        .as_ref()
        .map(|r| format!(" -> {r}"))
        .unwrap_or_default();
    format!("    {name}: func({}){result};\n", params.join(", "))
}

/// A package with interface `api` (the functions) and a world exporting it
/// plus one more interface per extra export name.
fn render(funcs: &[(String, Func)], exports: &[String]) -> String {
    let mut s = String::from("package gen:pkg@1.0.0;\ninterface api {\n");
    s.push_str(TYPES);
    for (name, f) in funcs {
        s.push_str(&render_fn(name, f));
    }
    s.push_str("}\n");
    for e in exports {
        s.push_str(&format!("interface {e} {{ ping: func(); }}\n"));
    }
    s.push_str("world w {\n    export api;\n");
    for e in exports {
        s.push_str(&format!("    export {e};\n"));
    }
    s.push_str("}\n");
    s
}

fn funcs() -> impl Strategy<Value = Vec<(String, Func)>> {
    prop::collection::vec(func(), 1..6).prop_map(|fs| {
        fs.into_iter()
            .enumerate()
            .map(|(i, f)| (format!("f{i}"), f))
            .collect()
    })
}

fn exports() -> impl Strategy<Value = Vec<String>> {
    (0usize..3).prop_map(|n| (0..n).map(|i| format!("extra{i}")).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn a_package_diffed_with_itself_is_empty(fs in funcs(), ex in exports()) {
        let text = render(&fs, &ex);
        // Two separate parses: nothing may rely on shared ids.
        let (a, b) = (pkg(&text), pkg(&text));
        let diff = wit::diff_packages(&a, &b);
        prop_assert!(diff.is_empty(), "{diff}");
        let diff = wit::diff_worlds(&a.world("w").unwrap(), &b.world("w").unwrap());
        prop_assert!(diff.is_empty(), "{diff}");
    }

    #[test]
    fn adding_a_function_or_export_never_breaks_callers(fs in funcs(), ex in exports(), added in func()) {
        let old = pkg(&render(&fs, &ex));
        let mut more = fs.clone();
        more.push(("added-fn".into(), added));
        let mut more_ex = ex.clone();
        more_ex.push("added-iface".into());
        let new = pkg(&render(&more, &more_ex));
        for diff in [wit::diff_packages(&old, &new), wit::diff_worlds(&old.world("w").unwrap(), &new.world("w").unwrap())] {
            prop_assert!(!diff.breaks_callers(), "{diff}");
            let f = diff.at("gen:pkg/api@1.0.0#added-fn").next().expect("the function is reported");
            let added = matches!(f.kind, ChangeKind::FunctionAdded { .. });
            prop_assert!(added, "{:?}", f.kind);
            prop_assert_eq!(f.implementers, Verdict::Breaking);
        }
        let world = wit::diff_worlds(&old.world("w").unwrap(), &new.world("w").unwrap());
        let e = world.at("gen:pkg/w@1.0.0#gen:pkg/added-iface").next().expect("the export is reported");
        prop_assert_eq!(&e.kind, &ChangeKind::ExportAdded);
    }

    #[test]
    fn removing_a_function_or_export_always_breaks_callers(fs in funcs(), ex in exports(), pick in any::<prop::sample::Index>()) {
        let old_text = render(&fs, &ex);
        let mut fewer = fs.clone();
        let (gone, _) = fewer.remove(pick.index(fs.len()));
        let new = pkg(&render(&fewer, &ex));
        let old = pkg(&old_text);
        for diff in [wit::diff_packages(&old, &new), wit::diff_worlds(&old.world("w").unwrap(), &new.world("w").unwrap())] {
            prop_assert!(diff.breaks_callers(), "{diff}");
            let path = format!("gen:pkg/api@1.0.0#{gone}");
            let f = diff.at(&path).next().expect("the removal is reported");
            prop_assert_eq!(f.callers, Verdict::Breaking);
        }
        if !ex.is_empty() {
            let new = pkg(&render(&fs, &ex[..ex.len() - 1]));
            let diff = wit::diff_worlds(&old.world("w").unwrap(), &new.world("w").unwrap());
            prop_assert!(diff.breaks_callers(), "{diff}");
        }
    }

    #[test]
    fn reversing_a_diff_swaps_callers_and_implementers(a in funcs(), b in funcs()) {
        // Same function names, independently generated signatures.
        let n = a.len().min(b.len());
        let (old, new) = (pkg(&render(&a[..n], &[])), pkg(&render(&b[..n], &[])));
        let forward = wit::diff_packages(&old, &new);
        let back = wit::diff_packages(&new, &old);
        prop_assert_eq!(forward.changes.len(), back.changes.len(), "{}\n{}", forward, back);
        prop_assert_eq!(forward.breaks_callers(), back.breaks_implementers(), "{}\n{}", forward, back);
        prop_assert_eq!(forward.breaks_implementers(), back.breaks_callers(), "{}\n{}", forward, back);
    }
}
