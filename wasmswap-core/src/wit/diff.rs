//! The semantic diff: walks two versions of the same interfaces and worlds
//! side by side and classifies every change for callers and implementers.
//!
//! Items are matched by version-free names (`wasi:io/streams#input-stream`
//! in 0.2.0 is the same type as in 0.2.12). Changes inside a named type are
//! reported once, at that type, with verdicts taken from every place the
//! type is used: a record only ever passed as an argument breaks different
//! people than one only ever returned.

use std::collections::{BTreeSet, HashMap, HashSet};

use indexmap::IndexMap;
use wit_parser::{
    Function, InterfaceId, Resolve, Stability, Type, TypeDefKind, TypeId, WorldId, WorldItem,
    WorldKey,
};

use super::compat::{Ty, accepts, same_abi, same_def_shallow, same_shallow};
use super::report::{Change, ChangeKind, Diff, Verdict};
use super::types::{
    display, display_def, function_kind, function_name, interface_path, named_types, type_key,
    type_path, world_item_key, world_path,
};

/// Which side of a world an interface or function is on, seen from the
/// diff's two audiences. Inside an interface, callers import it and
/// implementers export it (`Direct`). A world's imports are implemented by
/// the host and called by the component, so for a world (whose callers are
/// hosts and whose implementers are components) an import's roles swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Role {
    Direct,
    Swapped,
}

/// Who writes the values of a type somewhere it is used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Flows {
    caller_writes: bool,
    implementer_writes: bool,
}

impl Flows {
    const BOTH: Flows = Flows {
        caller_writes: true,
        implementer_writes: true,
    };
    fn written_by_caller(caller: bool) -> Flows {
        Flows {
            caller_writes: caller,
            implementer_writes: !caller,
        }
    }
    /// Arguments are written by the caller of the function: the world's
    /// caller for an export, the component for an import.
    fn params(role: Role) -> Flows {
        Self::written_by_caller(role == Role::Direct)
    }
    fn results(role: Role) -> Flows {
        Self::written_by_caller(role == Role::Swapped)
    }
    fn union(self, o: Flows) -> Flows {
        Flows {
            caller_writes: self.caller_writes || o.caller_writes,
            implementer_writes: self.implementer_writes || o.implementer_writes,
        }
    }
    fn is_empty(self) -> bool {
        !self.caller_writes && !self.implementer_writes
    }
}

/// The direction a value travels between the two versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// Old code writes it, new code reads it.
    OldToNew,
    /// New code writes it, old code reads it.
    NewToOld,
}

type Check = Result<(), String>;

/// Turns "can values cross in this direction" into the two verdicts.
/// Callers' arguments are read strictly (unknown fields refused); results
/// are read tolerantly (unknown fields ignored).
fn judge(flows: Flows, acc: &dyn Fn(Dir, bool) -> Check) -> (Check, Check) {
    let mut caller = Ok(());
    let mut implementer = Ok(());
    if flows.caller_writes {
        if let Err(e) = acc(Dir::OldToNew, true) {
            caller = Err(format!(
                "old callers send what the new version refuses: {e}"
            ));
        }
        if let Err(e) = acc(Dir::NewToOld, true) {
            implementer = Err(format!(
                "old implementations refuse what new callers send: {e}"
            ));
        }
    }
    if flows.implementer_writes {
        if caller.is_ok()
            && let Err(e) = acc(Dir::NewToOld, false)
        {
            caller = Err(format!(
                "old callers cannot read what the new version returns: {e}"
            ));
        }
        if implementer.is_ok()
            && let Err(e) = acc(Dir::OldToNew, false)
        {
            implementer = Err(format!(
                "new callers cannot read what old implementations return: {e}"
            ));
        }
    }
    (caller, implementer)
}

fn verdict(c: &Check) -> Verdict {
    if c.is_ok() {
        Verdict::Compatible
    } else {
        Verdict::Breaking
    }
}

/// The feature gate that exempts an item from compatibility, if either
/// side of it is `@unstable`.
fn unstable_gate(old: Option<&Stability>, new: Option<&Stability>) -> Option<String> {
    [old, new].into_iter().flatten().find_map(|s| match s {
        Stability::Unstable { feature, .. } => Some(feature.clone()),
        _ => None,
    })
}

struct Side<'a> {
    resolve: &'a Resolve,
    types: HashMap<String, TypeId>,
}

pub(crate) struct Differ<'a> {
    old: Side<'a>,
    new: Side<'a>,
    changes: Vec<Change>,
    /// Who writes each named type, over every use the walk has seen.
    flows: HashMap<String, Flows>,
    /// Named types defined in the compared interfaces and worlds: these
    /// are reported when added or removed.
    scope_types: BTreeSet<String>,
    /// Named types reachable from compared signatures, wherever defined:
    /// these are reported when their definitions change.
    reachable: BTreeSet<String>,
    /// Feature gates exempting named types (inherited from an unstable
    /// interface).
    type_gates: HashMap<String, String>,
    walked: HashSet<(bool, TypeId, bool, bool)>,
    /// The definition each side's signatures actually reach, by key: when a
    /// resolve holds two versions of a package, this is the one in use.
    reached: HashMap<(bool, String), TypeId>,
    diffed_interfaces: HashSet<(InterfaceId, InterfaceId, Role)>,
}

/// The path prefix of an interface's items: `ns:pkg/iface@v#`, or for an
/// interface written inline in a world `ns:pkg/world@v#name.`.
#[derive(Clone)]
struct Prefix(String);

impl Prefix {
    fn item(&self, name: &str) -> String {
        format!("{}{name}", self.0)
    }
}

impl<'a> Differ<'a> {
    pub(crate) fn new(old: &'a Resolve, new: &'a Resolve) -> Self {
        Differ {
            old: Side {
                resolve: old,
                types: named_types(old),
            },
            new: Side {
                resolve: new,
                types: named_types(new),
            },
            changes: Vec::new(),
            flows: HashMap::new(),
            scope_types: BTreeSet::new(),
            reachable: BTreeSet::new(),
            type_gates: HashMap::new(),
            walked: HashSet::new(),
            reached: HashMap::new(),
            diffed_interfaces: HashSet::new(),
        }
    }

    fn side(&self, new: bool) -> &Side<'a> {
        if new { &self.new } else { &self.old }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        path: String,
        kind: ChangeKind,
        (caller, implementer): (Check, Check),
        abi_breaking: bool,
        ok_reason: &str,
        gate: Option<&str>,
    ) {
        let mut reasons: Vec<String> = [caller.as_ref().err(), implementer.as_ref().err()]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let (mut callers, mut implementers) = (verdict(&caller), verdict(&implementer));
        if reasons.is_empty() {
            reasons.push(ok_reason.to_string());
        }
        let mut reason = reasons.join("; ");
        if let Some(feature) = gate {
            callers = Verdict::Compatible;
            implementers = Verdict::Compatible;
            reason = format!(
                "exempt: @unstable(feature = {feature}) carries no compatibility promise ({reason})"
            );
        }
        self.changes.push(Change {
            path,
            kind,
            callers,
            implementers,
            abi_breaking,
            reason,
        });
    }

    /// Records who writes `ty` and every named type inside it.
    fn walk(&mut self, new: bool, ty: Type, flows: Flows) {
        let Type::Id(id) = ty else { return };
        if !self
            .walked
            .insert((new, id, flows.caller_writes, flows.implementer_writes))
        {
            return;
        }
        let resolve = self.side(new).resolve;
        if let Some(key) = type_key(resolve, id) {
            self.reached.entry((new, key.clone())).or_insert(id);
            let f = self.flows.entry(key.clone()).or_default();
            *f = f.union(flows);
            self.reachable.insert(key);
        }
        let mut inner: Vec<Type> = Vec::new();
        match &resolve.types[id].kind {
            TypeDefKind::Record(r) => inner.extend(r.fields.iter().map(|f| f.ty)),
            TypeDefKind::Variant(v) => inner.extend(v.cases.iter().filter_map(|c| c.ty)),
            TypeDefKind::Tuple(t) => inner.extend(t.types.iter().copied()),
            TypeDefKind::Option(t) | TypeDefKind::List(t) | TypeDefKind::Type(t) => inner.push(*t),
            TypeDefKind::FixedLengthList(t, _) => inner.push(*t),
            TypeDefKind::Map(k, v) => inner.extend([*k, *v]),
            TypeDefKind::Result(r) => inner.extend(r.ok.iter().chain(r.err.iter()).copied()),
            TypeDefKind::Future(t) | TypeDefKind::Stream(t) => {
                // Streams and futures carry values both ways over time.
                if let Some(t) = t {
                    self.walk(new, *t, Flows::BOTH);
                }
            }
            TypeDefKind::Handle(wit_parser::Handle::Own(r) | wit_parser::Handle::Borrow(r)) => {
                inner.push(Type::Id(*r))
            }
            TypeDefKind::Resource
            | TypeDefKind::Flags(_)
            | TypeDefKind::Enum(_)
            | TypeDefKind::Unknown => {}
        }
        for t in inner {
            self.walk(new, t, flows);
        }
    }

    fn walk_function(&mut self, new: bool, func: &Function, role: Role) {
        for p in &func.params {
            self.walk(new, p.ty, Flows::params(role));
        }
        if let Some(r) = func.result {
            self.walk(new, r, Flows::results(role));
        }
    }

    fn signature(&self, new: bool, func: &Function) -> String {
        let resolve = self.side(new).resolve;
        let params = func
            .params
            .iter()
            .map(|p| format!("{}: {}", p.name, display(resolve, &p.ty)))
            .collect::<Vec<_>>()
            .join(", ");
        let result = func
            .result
            .map(|r| format!(" -> {}", display(resolve, &r)))
            .unwrap_or_default();
        format!("{}({params}){result}", function_kind(func))
    }

    /// Compares one function (or resource method) of an interface or world.
    pub(crate) fn function(
        &mut self,
        path: String,
        old: Option<&Function>,
        new: Option<&Function>,
        role: Role,
        outer_gate: Option<&str>,
    ) {
        let gate = outer_gate
            .map(str::to_string)
            .or_else(|| unstable_gate(old.map(|f| &f.stability), new.map(|f| &f.stability)));
        let gate = gate.as_deref();
        match (old, new) {
            (None, None) => {}
            (None, Some(f)) => {
                // Unstable functions promise nothing, so their uses do not
                // decide how a shared type's changes are judged.
                if gate.is_none() {
                    self.walk_function(true, f, role);
                }
                let kind = ChangeKind::FunctionAdded {
                    signature: self.signature(true, f),
                };
                let verdicts = match role {
                    Role::Direct => (
                        Ok(()),
                        Err("implementations of the old version do not provide it".into()),
                    ),
                    Role::Swapped => (
                        Err("hosts of the old version do not provide it".into()),
                        Ok(()),
                    ),
                };
                self.push(path, kind, verdicts, false, "additive", gate);
            }
            (Some(f), None) => {
                if gate.is_none() {
                    self.walk_function(false, f, role);
                }
                let kind = ChangeKind::FunctionRemoved {
                    signature: self.signature(false, f),
                };
                let verdicts = match role {
                    Role::Direct => (Err("callers of the old version call it".into()), Ok(())),
                    Role::Swapped => (Ok(()), Err("components of the old version call it".into())),
                };
                self.push(path, kind, verdicts, false, "", gate);
            }
            (Some(a), Some(b)) => {
                if gate.is_none() {
                    self.walk_function(false, a, role);
                    self.walk_function(true, b, role);
                }
                self.function_body(&path, a, b, role, gate);
                self.stability(&path, &a.stability, &b.stability, role);
            }
        }
    }

    fn function_body(
        &mut self,
        path: &str,
        a: &Function,
        b: &Function,
        role: Role,
        gate: Option<&str>,
    ) {
        let (or, nr) = (self.old.resolve, self.new.resolve);
        if std::mem::discriminant(&a.kind) != std::mem::discriminant(&b.kind) {
            let kind = ChangeKind::FunctionKindChanged {
                old: function_kind(a).into(),
                new: function_kind(b).into(),
            };
            let e = || Err("the calling convention differs".to_string());
            self.push(path.into(), kind, (e(), e()), true, "", gate);
            return;
        }
        let pflows = Flows::params(role);
        // Parameters are matched by name: wasmswap's JSON calls name them.
        for p in &b.params {
            if !a.params.iter().any(|q| q.name == p.name) {
                let optional = Ty::new(nr, p.ty).is_option();
                let name = p.name.clone();
                let verdicts = judge(pflows, &|dir, strict| match dir {
                    Dir::OldToNew if optional => Ok(()),
                    Dir::OldToNew => Err(format!("argument `{name}` is missing")),
                    Dir::NewToOld if strict => Err(format!("argument `{name}` is unknown")),
                    Dir::NewToOld => Ok(()),
                });
                let kind = ChangeKind::ParamAdded {
                    param: p.name.clone(),
                    ty: display(nr, &p.ty),
                };
                self.push(
                    path.into(),
                    kind,
                    verdicts,
                    true,
                    "an optional argument may be left out",
                    gate,
                );
            }
        }
        for p in &a.params {
            match b.params.iter().find(|q| q.name == p.name) {
                None => {
                    let optional = Ty::new(or, p.ty).is_option();
                    let name = p.name.clone();
                    let verdicts = judge(pflows, &|dir, strict| match dir {
                        Dir::OldToNew if strict => Err(format!("argument `{name}` is unknown")),
                        Dir::OldToNew => Ok(()),
                        Dir::NewToOld if optional => Ok(()),
                        Dir::NewToOld => Err(format!("argument `{name}` is missing")),
                    });
                    let kind = ChangeKind::ParamRemoved {
                        param: p.name.clone(),
                        ty: display(or, &p.ty),
                    };
                    self.push(path.into(), kind, verdicts, true, "", gate);
                }
                Some(q) => {
                    let (x, y) = (Ty::new(or, p.ty), Ty::new(nr, q.ty));
                    if !same_shallow(x, y) {
                        let verdicts = judge(pflows, &|dir, strict| match dir {
                            Dir::OldToNew => accepts(x, y, strict),
                            Dir::NewToOld => accepts(y, x, strict),
                        });
                        let kind = ChangeKind::ParamTypeChanged {
                            param: p.name.clone(),
                            old: display(or, &p.ty),
                            new: display(nr, &q.ty),
                        };
                        let abi = !same_abi(x, y);
                        self.push(
                            path.into(),
                            kind,
                            verdicts,
                            abi,
                            "every old value is still read",
                            gate,
                        );
                    }
                }
            }
        }
        let common = |from: &Function, other: &Function| -> Vec<String> {
            from.params
                .iter()
                .filter(|p| other.params.iter().any(|q| q.name == p.name))
                .map(|p| p.name.clone())
                .collect()
        };
        let (ca, cb) = (common(a, b), common(b, a));
        if ca != cb {
            let e = || {
                Err("positional arguments (a JSON array, compiled bindings) land in other parameters".to_string())
            };
            let kind = ChangeKind::ParamsReordered {
                old: a.params.iter().map(|p| p.name.clone()).collect(),
                new: b.params.iter().map(|p| p.name.clone()).collect(),
            };
            self.push(path.into(), kind, (e(), e()), true, "", gate);
        }
        let rflows = Flows::results(role);
        match (a.result, b.result) {
            (None, None) => {}
            (None, Some(t)) => {
                let verdicts = judge(rflows, &|dir, _| match dir {
                    Dir::OldToNew => Err("no value is returned".into()),
                    Dir::NewToOld => Ok(()),
                });
                let kind = ChangeKind::ResultAdded {
                    ty: display(nr, &t),
                };
                self.push(path.into(), kind, verdicts, true, "", gate);
            }
            (Some(t), None) => {
                let verdicts = judge(rflows, &|dir, _| match dir {
                    Dir::OldToNew => Ok(()),
                    Dir::NewToOld => Err("no value is returned".into()),
                });
                let kind = ChangeKind::ResultRemoved {
                    ty: display(or, &t),
                };
                self.push(path.into(), kind, verdicts, true, "", gate);
            }
            (Some(s), Some(t)) => {
                let (x, y) = (Ty::new(or, s), Ty::new(nr, t));
                if !same_shallow(x, y) {
                    let verdicts = judge(rflows, &|dir, strict| match dir {
                        Dir::OldToNew => accepts(x, y, strict),
                        Dir::NewToOld => accepts(y, x, strict),
                    });
                    let kind = ChangeKind::ResultTypeChanged {
                        old: display(or, &s),
                        new: display(nr, &t),
                    };
                    let abi = !same_abi(x, y);
                    self.push(
                        path.into(),
                        kind,
                        verdicts,
                        abi,
                        "every returned value is still read",
                        gate,
                    );
                }
            }
        }
    }

    /// Reports `@since`/`@unstable`/`@deprecated` transitions of an item
    /// present on both sides. Adding `@since` to an unannotated item is no
    /// change.
    fn stability(&mut self, path: &str, old: &Stability, new: &Stability, role: Role) {
        match (old, new) {
            (Stability::Unstable { feature, .. }, Stability::Stable { .. }) => {
                let kind = ChangeKind::Stabilized {
                    feature: feature.clone(),
                };
                self.push(
                    path.into(),
                    kind,
                    (Ok(()), Ok(())),
                    false,
                    "it is now covered by the compatibility promise",
                    None,
                );
            }
            (
                Stability::Stable { .. } | Stability::Unknown,
                Stability::Unstable { feature, .. },
            ) => {
                let kind = ChangeKind::MadeUnstable {
                    feature: feature.clone(),
                };
                let e = Err(format!(
                    "it is now only present with feature `{feature}` enabled"
                ));
                let verdicts = match role {
                    Role::Direct => (e, Ok(())),
                    Role::Swapped => (Ok(()), e),
                };
                self.push(path.into(), kind, verdicts, false, "", None);
            }
            (
                Stability::Stable {
                    deprecated: None, ..
                }
                | Stability::Unknown,
                Stability::Stable {
                    deprecated: Some(v),
                    ..
                },
            ) => {
                let kind = ChangeKind::Deprecated {
                    version: v.to_string(),
                };
                self.push(
                    path.into(),
                    kind,
                    (Ok(()), Ok(())),
                    false,
                    "it still works; plan its removal",
                    None,
                );
            }
            _ => {}
        }
    }

    /// Compares two versions of one interface.
    pub(crate) fn interface(
        &mut self,
        old: InterfaceId,
        new: InterfaceId,
        role: Role,
        outer_gate: Option<&str>,
    ) {
        if !self.diffed_interfaces.insert((old, new, role)) {
            return;
        }
        let (or, nr) = (self.old.resolve, self.new.resolve);
        let (oi, ni) = (&or.interfaces[old], &nr.interfaces[new]);
        // Items of a named interface follow `#`; those of an interface
        // written inline in a world (itself `world#name`) follow `.`.
        let sep = if ni.name.is_some() { '#' } else { '.' };
        let path = |r: &Resolve, id| interface_path(r, id).unwrap_or_else(|| "<interface>".into());
        let prefix = Prefix(format!("{}{sep}", path(nr, new)));
        let old_prefix = Prefix(format!("{}{sep}", path(or, old)));
        let gate = outer_gate
            .map(str::to_string)
            .or_else(|| unstable_gate(Some(&oi.stability), Some(&ni.stability)));
        if oi.name.is_some() {
            self.stability(&path(nr, new), &oi.stability, &ni.stability, role);
        }
        let mut names: IndexMap<String, (Option<&Function>, Option<&Function>)> = IndexMap::new();
        for f in oi.functions.values() {
            names.entry(function_name(or, f)).or_default().0 = Some(f);
        }
        for f in ni.functions.values() {
            names.entry(function_name(nr, f)).or_default().1 = Some(f);
        }
        for (name, (a, b)) in names {
            // A removed item is named as it was, with the old version.
            let path = match b {
                Some(_) => prefix.item(&name),
                None => old_prefix.item(&name),
            };
            self.function(path, a, b, role, gate.as_deref());
        }
        for &id in oi.types.values() {
            self.scope_type(false, id, gate.as_deref());
        }
        for &id in ni.types.values() {
            self.scope_type(true, id, gate.as_deref());
        }
    }

    fn scope_type(&mut self, new: bool, id: TypeId, gate: Option<&str>) {
        if let Some(key) = type_key(self.side(new).resolve, id) {
            if let Some(g) = gate {
                self.type_gates.insert(key.clone(), g.to_string());
            }
            self.scope_types.insert(key);
        }
    }

    /// A package gained an interface: nobody used or implemented it before.
    pub(crate) fn added_interface(&mut self, id: InterfaceId) {
        let r = self.new.resolve;
        let path = interface_path(r, id).unwrap_or_default();
        let gate = unstable_gate(None, Some(&r.interfaces[id].stability));
        self.push(
            path,
            ChangeKind::InterfaceAdded,
            (Ok(()), Ok(())),
            false,
            "nothing used or implemented it before",
            gate.as_deref(),
        );
    }

    /// A package lost an interface: its importers break.
    pub(crate) fn removed_interface(&mut self, id: InterfaceId) {
        let r = self.old.resolve;
        let path = interface_path(r, id).unwrap_or_default();
        let gate = unstable_gate(Some(&r.interfaces[id].stability), None);
        let verdicts = (Err("code that imports it no longer links".into()), Ok(()));
        self.push(
            path,
            ChangeKind::InterfaceRemoved,
            verdicts,
            false,
            "",
            gate.as_deref(),
        );
    }

    /// A package gained a world.
    pub(crate) fn added_world(&mut self, id: WorldId) {
        let r = self.new.resolve;
        let gate = unstable_gate(None, Some(&r.worlds[id].stability));
        self.push(
            world_path(r, id),
            ChangeKind::WorldAdded,
            (Ok(()), Ok(())),
            false,
            "nothing targeted it before",
            gate.as_deref(),
        );
    }

    /// A package lost a world: hosts and components built for it break.
    pub(crate) fn removed_world(&mut self, id: WorldId) {
        let r = self.old.resolve;
        let gate = unstable_gate(Some(&r.worlds[id].stability), None);
        let e = || Err("code built for it no longer finds it".to_string());
        self.push(
            world_path(r, id),
            ChangeKind::WorldRemoved,
            (e(), e()),
            false,
            "",
            gate.as_deref(),
        );
    }

    /// Compares two versions of a world: its imports and exports, and with
    /// `nested`, the contents of every interface it imports or exports.
    pub(crate) fn world(&mut self, old: WorldId, new: WorldId, nested: bool) {
        let (or, nr) = (self.old.resolve, self.new.resolve);
        let (ow, nw) = (&or.worlds[old], &nr.worlds[new]);
        let base_new = world_path(nr, new);
        let base_old = world_path(or, old);
        self.stability(&base_new, &ow.stability, &nw.stability, Role::Direct);
        let gate = unstable_gate(Some(&ow.stability), Some(&nw.stability));
        for (export, role) in [(false, Role::Swapped), (true, Role::Direct)] {
            // Items are matched by version-free name, unless a world holds
            // two versions of one interface: then the versions tell them apart.
            type Item<'x> = (String, String, &'x WorldKey, &'x WorldItem);
            let raw = |r: &'a Resolve, w: &'a wit_parser::World| -> Vec<Item<'a>> {
                let items = if export { &w.exports } else { &w.imports };
                items
                    .iter()
                    .map(|(k, v)| (world_item_key(r, k), r.name_world_key(k), k, v))
                    .collect()
            };
            let (ra, rb) = (raw(or, ow), raw(nr, nw));
            let mut count: HashMap<(bool, &str), usize> = HashMap::new();
            for (side, items) in [(false, &ra), (true, &rb)] {
                for (key, ..) in items {
                    *count.entry((side, key.as_str())).or_default() += 1;
                }
            }
            let ambiguous = |key: &str| {
                count.get(&(false, key)).copied().unwrap_or(0) > 1
                    || count.get(&(true, key)).copied().unwrap_or(0) > 1
            };
            let keyed = |items: &[Item<'a>]| -> IndexMap<String, (&'a WorldKey, &'a WorldItem)> {
                items
                    .iter()
                    .map(|(key, full, k, v)| {
                        let key = if ambiguous(key) {
                            full.clone()
                        } else {
                            key.clone()
                        };
                        (key, (*k, *v))
                    })
                    .collect()
            };
            let (a, b) = (keyed(&ra), keyed(&rb));
            let keys: Vec<String> = a
                .keys()
                .chain(b.keys())
                .cloned()
                .collect::<indexmap::IndexSet<_>>()
                .into_iter()
                .collect();
            for key in keys {
                let path_new = format!("{base_new}#{key}");
                match (a.get(&key), b.get(&key)) {
                    (None, None) => {}
                    (None, Some((_, item))) => {
                        let g = gate
                            .clone()
                            .or_else(|| unstable_gate(None, Some(item.stability(nr))));
                        self.world_item_added(
                            path_new,
                            new_or_removed(export, true),
                            item,
                            true,
                            role,
                            g.as_deref(),
                        );
                    }
                    (Some((_, item)), None) => {
                        let g = gate
                            .clone()
                            .or_else(|| unstable_gate(Some(item.stability(or)), None));
                        self.world_item_added(
                            format!("{base_old}#{key}"),
                            new_or_removed(export, false),
                            item,
                            false,
                            role,
                            g.as_deref(),
                        );
                    }
                    (Some((_, ia)), Some((_, ib))) => {
                        let g = gate.clone().or_else(|| {
                            unstable_gate(Some(ia.stability(or)), Some(ib.stability(nr)))
                        });
                        self.world_item_both(&path_new, ia, ib, role, nested, g.as_deref());
                    }
                }
            }
        }
    }

    fn world_item_added(
        &mut self,
        path: String,
        kind: ChangeKind,
        item: &WorldItem,
        new: bool,
        role: Role,
        gate: Option<&str>,
    ) {
        if let WorldItem::Function(f) = item {
            self.walk_function(new, f, role);
        }
        if let WorldItem::Type { id, .. } = item {
            self.scope_type(new, *id, gate);
            // Types ride along with the functions that use them.
            return;
        }
        let verdicts = match kind {
            ChangeKind::ImportAdded => (
                Err("hosts of the old version do not provide it".into()),
                Ok(()),
            ),
            ChangeKind::ImportRemoved => (
                Ok(()),
                Err("components of the old version import it".into()),
            ),
            ChangeKind::ExportAdded => (
                Ok(()),
                Err("components of the old version do not export it".into()),
            ),
            _ => (
                Err("hosts and clients of the old version use it".into()),
                Ok(()),
            ),
        };
        self.push(path, kind, verdicts, false, "", gate);
    }

    #[allow(clippy::too_many_arguments)]
    fn world_item_both(
        &mut self,
        path: &str,
        a: &WorldItem,
        b: &WorldItem,
        role: Role,
        nested: bool,
        gate: Option<&str>,
    ) {
        match (a, b) {
            (
                WorldItem::Interface {
                    id: ia,
                    stability: sa,
                    ..
                },
                WorldItem::Interface {
                    id: ib,
                    stability: sb,
                    ..
                },
            ) => {
                // The import or export statement's own `@since`/`@unstable`.
                self.stability(path, sa, sb, role);
                let inline = self.old.resolve.interfaces[*ia].name.is_none();
                if inline || nested {
                    self.interface(*ia, *ib, role, gate);
                }
            }
            (WorldItem::Function(f), WorldItem::Function(g)) => {
                self.function(path.to_string(), Some(f), Some(g), role, gate);
            }
            (WorldItem::Type { id: x, .. }, WorldItem::Type { id: y, .. }) => {
                self.scope_type(false, *x, gate);
                self.scope_type(true, *y, gate);
            }
            _ => {
                let name = |i: &WorldItem| match i {
                    WorldItem::Interface { .. } => "interface",
                    WorldItem::Function(_) => "function",
                    WorldItem::Type { .. } => "type",
                };
                let kind = ChangeKind::ItemKindChanged {
                    old: name(a).into(),
                    new: name(b).into(),
                };
                let e = || Err("it is a different kind of item".to_string());
                self.push(path.into(), kind, (e(), e()), true, "", gate);
            }
        }
    }

    /// Compares the named types found along the way, then sorts the report.
    pub(crate) fn finish(mut self, old_name: String, new_name: String) -> Diff {
        let keys: BTreeSet<String> = self.scope_types.union(&self.reachable).cloned().collect();
        for key in keys {
            let pick = |new: bool, side: &Side<'_>| {
                self.reached
                    .get(&(new, key.clone()))
                    .or_else(|| side.types.get(&key))
                    .copied()
            };
            let (a, b) = (pick(false, &self.old), pick(true, &self.new));
            let in_scope = self.scope_types.contains(&key);
            let flows = match self.flows.get(&key) {
                Some(f) if !f.is_empty() => *f,
                // Used by nothing compared here: other packages may `use`
                // it either way round.
                _ => Flows::BOTH,
            };
            let gate = self.type_gates.get(&key).cloned().or_else(|| {
                unstable_gate(
                    a.map(|id| &self.old.resolve.types[id].stability),
                    b.map(|id| &self.new.resolve.types[id].stability),
                )
            });
            match (a, b) {
                (None, Some(id)) if in_scope => {
                    let r = self.new.resolve;
                    let kind = ChangeKind::TypeAdded {
                        definition: display_def(r, &r.types[id].kind),
                    };
                    let path = type_path(r, id).unwrap_or(key);
                    self.push(
                        path,
                        kind,
                        (Ok(()), Ok(())),
                        false,
                        "nothing used it before",
                        gate.as_deref(),
                    );
                }
                (Some(id), None) if in_scope => {
                    let r = self.old.resolve;
                    let kind = ChangeKind::TypeRemoved {
                        definition: display_def(r, &r.types[id].kind),
                    };
                    let path = type_path(r, id).unwrap_or(key);
                    self.push(
                        path,
                        kind,
                        (Err("code that names it no longer builds".into()), Ok(())),
                        false,
                        "",
                        gate.as_deref(),
                    );
                }
                (Some(x), Some(y)) => self.type_def(x, y, flows, gate.as_deref()),
                _ => {}
            }
        }
        // Stable order: by path, then in the order the walk found them.
        self.changes.sort_by(|a, b| a.path.cmp(&b.path));
        Diff {
            old: old_name,
            new: new_name,
            changes: self.changes,
        }
    }

    fn type_def(&mut self, x: TypeId, y: TypeId, flows: Flows, gate: Option<&str>) {
        let (or, nr) = (self.old.resolve, self.new.resolve);
        let (dx, dy) = (&or.types[x], &nr.types[y]);
        let path = type_path(nr, y).unwrap_or_default();
        self.stability(&path, &dx.stability, &dy.stability, Role::Direct);
        let member = |m: &str| format!("{path}.{m}");
        let ty = |r: &'a Resolve, t: Type| Ty::new(r, t);
        match (&dx.kind, &dy.kind) {
            (TypeDefKind::Record(a), TypeDefKind::Record(b)) => {
                for f in &b.fields {
                    match a.fields.iter().find(|g| g.name == f.name) {
                        None => {
                            let optional = ty(nr, f.ty).is_option();
                            let n = f.name.clone();
                            let verdicts = judge(flows, &|dir, strict| match dir {
                                Dir::OldToNew if optional => Ok(()),
                                Dir::OldToNew => Err(format!("field `{n}` is missing")),
                                Dir::NewToOld if strict => Err(format!("field `{n}` is unknown")),
                                Dir::NewToOld => Ok(()),
                            });
                            let kind = ChangeKind::FieldAdded {
                                ty: display(nr, &f.ty),
                            };
                            self.push(
                                member(&f.name),
                                kind,
                                verdicts,
                                true,
                                "an optional field may be left out and unknown results are ignored",
                                gate,
                            );
                        }
                        Some(g) => {
                            let (p, q) = (ty(or, g.ty), ty(nr, f.ty));
                            if !same_shallow(p, q) {
                                let verdicts = judge(flows, &|dir, strict| match dir {
                                    Dir::OldToNew => accepts(p, q, strict),
                                    Dir::NewToOld => accepts(q, p, strict),
                                });
                                let kind = ChangeKind::FieldTypeChanged {
                                    old: display(or, &g.ty),
                                    new: display(nr, &f.ty),
                                };
                                self.push(
                                    member(&f.name),
                                    kind,
                                    verdicts,
                                    !same_abi(p, q),
                                    "every value still reads",
                                    gate,
                                );
                            }
                        }
                    }
                }
                for g in &a.fields {
                    if !b.fields.iter().any(|f| f.name == g.name) {
                        let optional = ty(or, g.ty).is_option();
                        let n = g.name.clone();
                        let verdicts = judge(flows, &|dir, strict| match dir {
                            Dir::OldToNew if strict => Err(format!("field `{n}` is unknown")),
                            Dir::OldToNew => Ok(()),
                            Dir::NewToOld if optional => Ok(()),
                            Dir::NewToOld => Err(format!("field `{n}` is missing")),
                        });
                        let kind = ChangeKind::FieldRemoved {
                            ty: display(or, &g.ty),
                        };
                        let path = format!("{}.{}", type_path(or, x).unwrap_or_default(), g.name);
                        self.push(
                            path,
                            kind,
                            verdicts,
                            true,
                            "readers ignore it and it was optional",
                            gate,
                        );
                    }
                }
                let names = |r: &wit_parser::Record| {
                    r.fields.iter().map(|f| f.name.clone()).collect::<Vec<_>>()
                };
                self.reorder(
                    &path,
                    names(a),
                    names(b),
                    |old, new| ChangeKind::FieldsReordered { old, new },
                    "fields are matched by name",
                    gate,
                );
            }
            (TypeDefKind::Variant(a), TypeDefKind::Variant(b)) => {
                let cases = |v: &wit_parser::Variant| {
                    v.cases
                        .iter()
                        .map(|c| (c.name.clone(), c.ty))
                        .collect::<Vec<_>>()
                };
                self.cases(&path, x, cases(a), cases(b), flows, gate);
            }
            (TypeDefKind::Enum(a), TypeDefKind::Enum(b)) => {
                let cases = |e: &wit_parser::Enum| {
                    e.cases
                        .iter()
                        .map(|c| (c.name.clone(), None))
                        .collect::<Vec<_>>()
                };
                self.cases(&path, x, cases(a), cases(b), flows, gate);
            }
            (TypeDefKind::Flags(a), TypeDefKind::Flags(b)) => {
                let names = |f: &wit_parser::Flags| {
                    f.flags.iter().map(|f| f.name.clone()).collect::<Vec<_>>()
                };
                let (na, nb) = (names(a), names(b));
                for f in nb.iter().filter(|f| !na.contains(f)) {
                    let n = f.clone();
                    let verdicts = judge(flows, &|dir, _| match dir {
                        Dir::OldToNew => Ok(()),
                        Dir::NewToOld => Err(format!("flag `{n}` is unknown")),
                    });
                    self.push(member(f), ChangeKind::FlagAdded, verdicts, true, "", gate);
                }
                for f in na.iter().filter(|f| !nb.contains(f)) {
                    let n = f.clone();
                    let verdicts = judge(flows, &|dir, _| match dir {
                        Dir::OldToNew => Err(format!("flag `{n}` is unknown")),
                        Dir::NewToOld => Ok(()),
                    });
                    let path = format!("{}.{f}", type_path(or, x).unwrap_or_default());
                    self.push(path, ChangeKind::FlagRemoved, verdicts, true, "", gate);
                }
                self.reorder(
                    &path,
                    na,
                    nb,
                    |old, new| ChangeKind::FlagsReordered { old, new },
                    "flags are matched by name",
                    gate,
                );
            }
            (TypeDefKind::Resource, TypeDefKind::Resource) => {}
            _ => {
                let (p, q) = (Ty::new(or, Type::Id(x)), Ty::new(nr, Type::Id(y)));
                if !same_def_shallow(p, q) {
                    let verdicts = judge(flows, &|dir, strict| match dir {
                        Dir::OldToNew => accepts(p, q, strict),
                        Dir::NewToOld => accepts(q, p, strict),
                    });
                    let kind = ChangeKind::TypeChanged {
                        old: display_def(or, &dx.kind),
                        new: display_def(nr, &dy.kind),
                    };
                    self.push(
                        path,
                        kind,
                        verdicts,
                        !same_abi(p, q),
                        "every value still reads",
                        gate,
                    );
                }
            }
        }
    }

    fn cases(
        &mut self,
        path: &str,
        old_id: TypeId,
        a: Vec<(String, Option<Type>)>,
        b: Vec<(String, Option<Type>)>,
        flows: Flows,
        gate: Option<&str>,
    ) {
        let (or, nr) = (self.old.resolve, self.new.resolve);
        let shown = |r: &Resolve, t: &Option<Type>| t.map(|t| display(r, &t));
        for (name, t) in &b {
            match a.iter().find(|(n, _)| n == name) {
                None => {
                    let n = name.clone();
                    let verdicts = judge(flows, &|dir, _| match dir {
                        Dir::OldToNew => Ok(()),
                        Dir::NewToOld => Err(format!("case `{n}` is unknown")),
                    });
                    let kind = ChangeKind::CaseAdded {
                        payload: shown(nr, t),
                    };
                    self.push(format!("{path}.{name}"), kind, verdicts, true, "", gate);
                }
                Some((_, s)) => {
                    let same = match (s, t) {
                        (None, None) => true,
                        (Some(s), Some(t)) => same_shallow(Ty::new(or, *s), Ty::new(nr, *t)),
                        _ => false,
                    };
                    if !same {
                        let check = |w: (&Resolve, Option<Type>),
                                     r: (&Resolve, Option<Type>),
                                     strict: bool| match (
                            w.1, r.1,
                        ) {
                            (None, None) => Ok(()),
                            (Some(x), Some(y)) => accepts(Ty::new(w.0, x), Ty::new(r.0, y), strict),
                            (Some(_), None) => Err("the payload is not read".to_string()),
                            (None, Some(_)) => Err("the payload is missing".to_string()),
                        };
                        let verdicts = judge(flows, &|dir, strict| match dir {
                            Dir::OldToNew => check((or, *s), (nr, *t), strict),
                            Dir::NewToOld => check((nr, *t), (or, *s), strict),
                        });
                        let abi = match (s, t) {
                            (Some(s), Some(t)) => !same_abi(Ty::new(or, *s), Ty::new(nr, *t)),
                            _ => true,
                        };
                        let kind = ChangeKind::CasePayloadChanged {
                            old: shown(or, s),
                            new: shown(nr, t),
                        };
                        self.push(
                            format!("{path}.{name}"),
                            kind,
                            verdicts,
                            abi,
                            "every payload still reads",
                            gate,
                        );
                    }
                }
            }
        }
        for (name, t) in &a {
            if !b.iter().any(|(n, _)| n == name) {
                let n = name.clone();
                let verdicts = judge(flows, &|dir, _| match dir {
                    Dir::OldToNew => Err(format!("case `{n}` is unknown")),
                    Dir::NewToOld => Ok(()),
                });
                let kind = ChangeKind::CaseRemoved {
                    payload: shown(or, t),
                };
                let p = format!("{}.{name}", type_path(or, old_id).unwrap_or_default());
                self.push(p, kind, verdicts, true, "", gate);
            }
        }
        let names =
            |v: &[(String, Option<Type>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        self.reorder(
            path,
            names(&a),
            names(&b),
            |old, new| ChangeKind::CasesReordered { old, new },
            "cases are matched by name",
            gate,
        );
    }

    /// Reports members that kept their names but changed their order.
    fn reorder(
        &mut self,
        path: &str,
        old: Vec<String>,
        new: Vec<String>,
        kind: fn(Vec<String>, Vec<String>) -> ChangeKind,
        why_ok: &str,
        gate: Option<&str>,
    ) {
        let common_old: Vec<&String> = old.iter().filter(|n| new.contains(n)).collect();
        let common_new: Vec<&String> = new.iter().filter(|n| old.contains(n)).collect();
        if common_old != common_new {
            self.push(
                path.into(),
                kind(old, new),
                (Ok(()), Ok(())),
                true,
                why_ok,
                gate,
            );
        }
    }
}

fn new_or_removed(export: bool, added: bool) -> ChangeKind {
    match (export, added) {
        (false, true) => ChangeKind::ImportAdded,
        (false, false) => ChangeKind::ImportRemoved,
        (true, true) => ChangeKind::ExportAdded,
        (true, false) => ChangeKind::ExportRemoved,
    }
}

/// Interfaces of a package by name, for pairing two versions.
pub(crate) fn interfaces_by_name(
    resolve: &Resolve,
    pkg: wit_parser::PackageId,
) -> IndexMap<String, InterfaceId> {
    resolve.packages[pkg]
        .interfaces
        .iter()
        .map(|(n, id)| (n.clone(), *id))
        .collect()
}
