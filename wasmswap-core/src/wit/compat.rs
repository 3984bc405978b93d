//! Whether values of one WIT type can be read as another.
//!
//! This is the value-level rule the diff's verdicts come from. A *writer*
//! produces a value of its type; a *reader* decodes it as its own type.
//! Records match fields by name; a field the writer lacks is read as `none`
//! when the reader's field is an `option`; a field the reader does not know
//! is refused by a *strict* reader (wasmswap's JSON arguments, to catch
//! typos) and ignored by a *tolerant* one (callers reading results, as REST
//! clients do). Variant, enum and flag values must name a case the reader
//! knows. Integers widen (`u8` reads as `u32` or `s16`), `f32` as `f64`, and
//! a `T` reads as `option<T>`. Resources match by version-free name.

use wit_parser::{Handle, Resolve, Type, TypeDefKind};

use super::types::{display, type_key, unalias};

/// One side of a comparison: the resolve a type lives in, and the type.
#[derive(Clone, Copy)]
pub(crate) struct Ty<'a> {
    pub(crate) resolve: &'a Resolve,
    pub(crate) ty: Type,
}

impl<'a> Ty<'a> {
    pub(crate) fn new(resolve: &'a Resolve, ty: Type) -> Self {
        Ty { resolve, ty }
    }

    fn with(self, ty: Type) -> Self {
        Ty {
            resolve: self.resolve,
            ty,
        }
    }

    fn kind(&self) -> Option<&'a TypeDefKind> {
        match self.ty {
            Type::Id(id) => Some(&self.resolve.types[id].kind),
            _ => None,
        }
    }

    fn text(&self) -> String {
        display(self.resolve, &self.ty)
    }

    /// Through aliases, and from an anonymous `own<r>` (how a decoded
    /// component spells a handle) to `r` (how parsed WIT spells it).
    fn unaliased(self) -> Self {
        let t = self.with(unalias(self.resolve, self.ty));
        match t.ty {
            Type::Id(id) => match &t.resolve.types[id].kind {
                TypeDefKind::Handle(Handle::Own(r)) if t.resolve.types[id].name.is_none() => {
                    t.with(unalias(t.resolve, Type::Id(*r)))
                }
                _ => t,
            },
            _ => t,
        }
    }

    /// Whether the type (through aliases) is an `option`.
    pub(crate) fn is_option(self) -> bool {
        matches!(self.unaliased().kind(), Some(TypeDefKind::Option(_)))
    }
}

/// `u8` fits in `u32`, `s16`, …; a signed type never fits an unsigned one.
fn widens(w: Type, r: Type) -> bool {
    use Type::*;
    let rank = |t: Type| -> Option<(bool, u8)> {
        Some(match t {
            U8 => (false, 8),
            U16 => (false, 16),
            U32 => (false, 32),
            U64 => (false, 64),
            S8 => (true, 8),
            S16 => (true, 16),
            S32 => (true, 32),
            S64 => (true, 64),
            _ => return None,
        })
    };
    match (rank(w), rank(r)) {
        (Some((ws, wb)), Some((rs, rb))) => match (ws, rs) {
            (false, false) | (true, true) => wb <= rb,
            (false, true) => wb < rb,
            (true, false) => false,
        },
        _ => matches!((w, r), (F32, F64)),
    }
}

/// Whether every value the writer's type can hold is read by the reader's
/// type; `Err` says which value would not be.
pub(crate) fn accepts(w: Ty<'_>, r: Ty<'_>, strict: bool) -> Result<(), String> {
    check(w, r, strict, false)
}

/// The version-free key of a named type (through `own` handles, which name
/// the resource itself).
fn named_key(t: Ty<'_>) -> Option<String> {
    match t.ty {
        Type::Id(id) => match &t.resolve.types[id].kind {
            TypeDefKind::Handle(Handle::Own(r)) if t.resolve.types[id].name.is_none() => {
                type_key(t.resolve, *r)
            }
            _ => type_key(t.resolve, id),
        },
        _ => None,
    }
}

/// `nested`: inside the compared types, a named type met on both sides
/// under one name is taken as read: the diff reports its own changes at
/// that type, so they are not judged again wherever it is used.
fn check(w: Ty<'_>, r: Ty<'_>, strict: bool, nested: bool) -> Result<(), String> {
    if nested
        && let (Some(a), Some(b)) = (named_key(w), named_key(r))
        && a == b
    {
        return Ok(());
    }
    let (w, r) = (w.unaliased(), r.unaliased());
    let mismatch = || Err(format!("`{}` does not read as `{}`", w.text(), r.text()));
    match (w.kind(), r.kind()) {
        (None, None) => {
            if w.ty == r.ty || widens(w.ty, r.ty) {
                Ok(())
            } else {
                mismatch()
            }
        }
        // A plain value reads as `some(value)`.
        (wk, Some(TypeDefKind::Option(rt))) if !matches!(wk, Some(TypeDefKind::Option(_))) => {
            check(w, r.with(*rt), strict, true)
        }
        (None, Some(_)) | (Some(_), None) => mismatch(),
        (Some(wk), Some(rk)) => accepts_def(w, wk, r, rk, strict).map_err(|e| {
            if e.is_empty() {
                format!("`{}` does not read as `{}`", w.text(), r.text())
            } else {
                e
            }
        }),
    }
}

fn payload(
    w: Ty<'_>,
    wt: Option<Type>,
    r: Ty<'_>,
    rt: Option<Type>,
    strict: bool,
) -> Result<(), String> {
    match (wt, rt) {
        (None, None) => Ok(()),
        (Some(a), Some(b)) => check(w.with(a), r.with(b), strict, true),
        (Some(a), None) => Err(format!(
            "a `{}` payload is not read",
            display(w.resolve, &a)
        )),
        (None, Some(b)) => Err(format!("a `{}` payload is missing", display(r.resolve, &b))),
    }
}

fn accepts_def(
    w: Ty<'_>,
    wk: &TypeDefKind,
    r: Ty<'_>,
    rk: &TypeDefKind,
    strict: bool,
) -> Result<(), String> {
    match (wk, rk) {
        (TypeDefKind::Record(a), TypeDefKind::Record(b)) => {
            for rf in &b.fields {
                match a.fields.iter().find(|f| f.name == rf.name) {
                    Some(wf) => check(w.with(wf.ty), r.with(rf.ty), strict, true)
                        .map_err(|e| format!("field `{}`: {e}", rf.name))?,
                    None if r.with(rf.ty).is_option() => {}
                    None => return Err(format!("field `{}` is missing", rf.name)),
                }
            }
            if strict
                && let Some(extra) = a
                    .fields
                    .iter()
                    .find(|f| !b.fields.iter().any(|g| g.name == f.name))
            {
                return Err(format!("field `{}` is unknown to the reader", extra.name));
            }
            Ok(())
        }
        (TypeDefKind::Variant(a), TypeDefKind::Variant(b)) => {
            for wc in &a.cases {
                let rc = b
                    .cases
                    .iter()
                    .find(|c| c.name == wc.name)
                    .ok_or_else(|| format!("case `{}` is unknown to the reader", wc.name))?;
                payload(w, wc.ty, r, rc.ty, strict)
                    .map_err(|e| format!("case `{}`: {e}", wc.name))?;
            }
            Ok(())
        }
        (TypeDefKind::Enum(a), TypeDefKind::Enum(b)) => {
            match a
                .cases
                .iter()
                .find(|c| !b.cases.iter().any(|d| d.name == c.name))
            {
                Some(c) => Err(format!("case `{}` is unknown to the reader", c.name)),
                None => Ok(()),
            }
        }
        (TypeDefKind::Flags(a), TypeDefKind::Flags(b)) => {
            match a
                .flags
                .iter()
                .find(|f| !b.flags.iter().any(|g| g.name == f.name))
            {
                Some(f) => Err(format!("flag `{}` is unknown to the reader", f.name)),
                None => Ok(()),
            }
        }
        (TypeDefKind::Option(a), TypeDefKind::Option(b)) => {
            check(w.with(*a), r.with(*b), strict, true)
        }
        (TypeDefKind::Result(a), TypeDefKind::Result(b)) => {
            payload(w, a.ok, r, b.ok, strict).map_err(|e| format!("ok: {e}"))?;
            payload(w, a.err, r, b.err, strict).map_err(|e| format!("err: {e}"))
        }
        (TypeDefKind::List(a), TypeDefKind::List(b)) => check(w.with(*a), r.with(*b), strict, true),
        (TypeDefKind::FixedLengthList(a, n), TypeDefKind::FixedLengthList(b, m)) if n == m => {
            check(w.with(*a), r.with(*b), strict, true)
        }
        (TypeDefKind::FixedLengthList(a, _), TypeDefKind::List(b)) => {
            check(w.with(*a), r.with(*b), strict, true)
        }
        (TypeDefKind::Map(ak, av), TypeDefKind::Map(bk, bv)) => {
            check(w.with(*ak), r.with(*bk), strict, true)?;
            check(w.with(*av), r.with(*bv), strict, true)
        }
        (TypeDefKind::Tuple(a), TypeDefKind::Tuple(b)) => {
            if a.types.len() != b.types.len() {
                return Err(format!(
                    "a {}-tuple does not read as a {}-tuple",
                    a.types.len(),
                    b.types.len()
                ));
            }
            for (i, (x, y)) in a.types.iter().zip(&b.types).enumerate() {
                check(w.with(*x), r.with(*y), strict, true)
                    .map_err(|e| format!("element {i}: {e}"))?;
            }
            Ok(())
        }
        (TypeDefKind::Handle(a), TypeDefKind::Handle(b)) => {
            let (own_a, ra) = handle(a);
            let (own_b, rb) = handle(b);
            if own_a != own_b {
                return Err("an owned handle and a borrow are not interchangeable".into());
            }
            same_resource(w.with(Type::Id(ra)), r.with(Type::Id(rb)))
        }
        (TypeDefKind::Resource, TypeDefKind::Resource) => same_resource(w, r),
        // Streams and futures carry values both ways over time: their
        // payloads must be identical.
        (TypeDefKind::Future(a), TypeDefKind::Future(b))
        | (TypeDefKind::Stream(a), TypeDefKind::Stream(b)) => match (a, b) {
            (None, None) => Ok(()),
            (Some(x), Some(y)) if same_abi(w.with(*x), r.with(*y)) => Ok(()),
            _ => Err(String::new()),
        },
        _ => Err(String::new()),
    }
}

fn handle(h: &Handle) -> (bool, wit_parser::TypeId) {
    match h {
        Handle::Own(id) => (true, *id),
        Handle::Borrow(id) => (false, *id),
    }
}

fn same_resource(a: Ty<'_>, b: Ty<'_>) -> Result<(), String> {
    let (a, b) = (a.unaliased(), b.unaliased());
    let key = |t: Ty<'_>| match t.ty {
        Type::Id(id) => type_key(t.resolve, id),
        _ => None,
    };
    if key(a).is_some() && key(a) == key(b) {
        Ok(())
    } else {
        Err(format!("resource `{}` is not `{}`", a.text(), b.text()))
    }
}

/// Whether two types have the same canonical ABI shape: the same structure,
/// field and case names in the same order, the same primitive types, the
/// same resources. A component compiled against one links against the other.
pub(crate) fn same_abi(a: Ty<'_>, b: Ty<'_>) -> bool {
    let (a, b) = (a.unaliased(), b.unaliased());
    match (a.kind(), b.kind()) {
        (None, None) => a.ty == b.ty,
        (Some(ak), Some(bk)) => same_def(a, ak, b, bk, &|x, y| same_abi(x, y)),
        _ => false,
    }
}

/// Whether two types are written the same way, comparing named types by
/// name only: a change inside a named type is reported at that type, so a
/// field or parameter that names it has not changed.
pub(crate) fn same_shallow(a: Ty<'_>, b: Ty<'_>) -> bool {
    match (named_key(a), named_key(b)) {
        (Some(x), Some(y)) => x == y,
        (Some(_), None) | (None, Some(_)) => false,
        (None, None) => match (a.kind(), b.kind()) {
            (None, None) => a.ty == b.ty,
            (Some(ak), Some(bk)) => same_def(a, ak, b, bk, &|x, y| same_shallow(x, y)),
            _ => false,
        },
    }
}

fn same_def(
    a: Ty<'_>,
    ak: &TypeDefKind,
    b: Ty<'_>,
    bk: &TypeDefKind,
    eq: &dyn Fn(Ty<'_>, Ty<'_>) -> bool,
) -> bool {
    let opt = |x: &Option<Type>, y: &Option<Type>| match (x, y) {
        (None, None) => true,
        (Some(x), Some(y)) => eq(a.with(*x), b.with(*y)),
        _ => false,
    };
    match (ak, bk) {
        (TypeDefKind::Record(x), TypeDefKind::Record(y)) => {
            x.fields.len() == y.fields.len()
                && x.fields
                    .iter()
                    .zip(&y.fields)
                    .all(|(f, g)| f.name == g.name && eq(a.with(f.ty), b.with(g.ty)))
        }
        (TypeDefKind::Variant(x), TypeDefKind::Variant(y)) => {
            x.cases.len() == y.cases.len()
                && x.cases
                    .iter()
                    .zip(&y.cases)
                    .all(|(c, d)| c.name == d.name && opt(&c.ty, &d.ty))
        }
        (TypeDefKind::Enum(x), TypeDefKind::Enum(y)) => {
            x.cases.len() == y.cases.len()
                && x.cases.iter().zip(&y.cases).all(|(c, d)| c.name == d.name)
        }
        (TypeDefKind::Flags(x), TypeDefKind::Flags(y)) => {
            x.flags.len() == y.flags.len()
                && x.flags.iter().zip(&y.flags).all(|(c, d)| c.name == d.name)
        }
        (TypeDefKind::Tuple(x), TypeDefKind::Tuple(y)) => {
            x.types.len() == y.types.len()
                && x.types
                    .iter()
                    .zip(&y.types)
                    .all(|(s, t)| eq(a.with(*s), b.with(*t)))
        }
        (TypeDefKind::Option(x), TypeDefKind::Option(y))
        | (TypeDefKind::List(x), TypeDefKind::List(y)) => eq(a.with(*x), b.with(*y)),
        (TypeDefKind::FixedLengthList(x, n), TypeDefKind::FixedLengthList(y, m)) => {
            n == m && eq(a.with(*x), b.with(*y))
        }
        (TypeDefKind::Map(xk, xv), TypeDefKind::Map(yk, yv)) => {
            eq(a.with(*xk), b.with(*yk)) && eq(a.with(*xv), b.with(*yv))
        }
        (TypeDefKind::Result(x), TypeDefKind::Result(y)) => {
            opt(&x.ok, &y.ok) && opt(&x.err, &y.err)
        }
        (TypeDefKind::Future(x), TypeDefKind::Future(y))
        | (TypeDefKind::Stream(x), TypeDefKind::Stream(y)) => opt(x, y),
        (TypeDefKind::Handle(x), TypeDefKind::Handle(y)) => {
            let ((ox, rx), (oy, ry)) = (handle(x), handle(y));
            ox == oy && same_resource(a.with(Type::Id(rx)), b.with(Type::Id(ry))).is_ok()
        }
        (TypeDefKind::Resource, TypeDefKind::Resource) => same_resource(a, b).is_ok(),
        (TypeDefKind::Type(x), TypeDefKind::Type(y)) => eq(a.with(*x), b.with(*y)),
        _ => false,
    }
}

/// Whether two named types' definitions are written the same way (named
/// types inside compared by name).
pub(crate) fn same_def_shallow(a: Ty<'_>, b: Ty<'_>) -> bool {
    match (a.kind(), b.kind()) {
        (Some(ak), Some(bk)) => same_def(a, ak, b, bk, &|x, y| same_shallow(x, y)),
        _ => a.ty == b.ty,
    }
}
