//! Naming WIT items across two resolves: version-free keys that match an
//! item in one version of a package with the same item in another, paths
//! for reports, and types printed as WIT.

use std::collections::HashMap;

use wit_parser::{
    Function, FunctionKind, Handle, InterfaceId, Resolve, Type, TypeDefKind, TypeId, TypeOwner,
    WorldId, WorldKey,
};

/// `namespace:package/name` without a version, so that `wasi:io/streams`
/// at 0.2.0 and at 0.2.12 are the same interface.
/// An interface written inline in a world (`import h: interface { … }`)
/// is keyed `ns:pkg/world#h`.
pub(crate) fn interface_key(resolve: &Resolve, id: InterfaceId) -> Option<String> {
    let iface = &resolve.interfaces[id];
    let Some(name) = iface.name.as_ref() else {
        let (world, key) = inline_owner(resolve, id)?;
        return Some(format!("{}#{key}", world_key(resolve, world)));
    };
    let pkg = &resolve.packages[iface.package?].name;
    Some(format!("{}:{}/{}", pkg.namespace, pkg.name, name))
}

/// The world and item name an inline interface is declared under.
fn inline_owner(resolve: &Resolve, id: InterfaceId) -> Option<(WorldId, String)> {
    resolve.worlds.iter().find_map(|(wid, w)| {
        w.imports
            .iter()
            .chain(w.exports.iter())
            .find_map(|(k, item)| match (k, item) {
                (WorldKey::Name(n), wit_parser::WorldItem::Interface { id: i, .. }) if *i == id => {
                    Some((wid, n.clone()))
                }
                _ => None,
            })
    })
}

/// `namespace:package/world` without a version.
pub(crate) fn world_key(resolve: &Resolve, id: WorldId) -> String {
    let world = &resolve.worlds[id];
    match world.package {
        Some(p) => {
            let pkg = &resolve.packages[p].name;
            format!("{}:{}/{}", pkg.namespace, pkg.name, world.name)
        }
        None => world.name.clone(),
    }
}

/// The name a report shows for an interface: with its version.
pub(crate) fn interface_path(resolve: &Resolve, id: InterfaceId) -> Option<String> {
    resolve.id_of(id).or_else(|| {
        let (world, key) = inline_owner(resolve, id)?;
        Some(format!("{}#{key}", world_path(resolve, world)))
    })
}

/// The name a report shows for a world: with its package's version.
pub(crate) fn world_path(resolve: &Resolve, id: WorldId) -> String {
    let world = &resolve.worlds[id];
    match world.package {
        Some(p) => resolve.id_of_name(p, &world.name),
        None => world.name.clone(),
    }
}

/// The version-free key of a world import or export: the interface's key,
/// or the item's own name.
pub(crate) fn world_item_key(resolve: &Resolve, key: &WorldKey) -> String {
    match key {
        WorldKey::Name(n) => n.clone(),
        WorldKey::Interface(id) => {
            interface_key(resolve, *id).unwrap_or_else(|| resolve.name_world_key(key))
        }
    }
}

/// Version-free key of a named type: `ns:pkg/iface#name`; `None` for
/// anonymous types (`list<u8>` and the like).
pub(crate) fn type_key(resolve: &Resolve, id: TypeId) -> Option<String> {
    let def = &resolve.types[id];
    let name = def.name.as_ref()?;
    let owner = match def.owner {
        TypeOwner::Interface(i) => interface_key(resolve, i)?,
        TypeOwner::World(w) => world_key(resolve, w),
        TypeOwner::None => return None,
    };
    Some(format!("{owner}#{name}"))
}

/// The path a report shows for a named type: `ns:pkg/iface@1.2.3#name`.
pub(crate) fn type_path(resolve: &Resolve, id: TypeId) -> Option<String> {
    let def = &resolve.types[id];
    let name = def.name.as_ref()?;
    Some(match def.owner {
        // An inline interface's path already ends in `#item`.
        TypeOwner::Interface(i) if resolve.interfaces[i].name.is_none() => {
            format!("{}.{name}", interface_path(resolve, i)?)
        }
        TypeOwner::Interface(i) => format!("{}#{name}", interface_path(resolve, i)?),
        TypeOwner::World(w) => format!("{}#{name}", world_path(resolve, w)),
        TypeOwner::None => return None,
    })
}

/// Every named type of a resolve by version-free key. When a resolve
/// holds two versions of one package, the later version wins.
pub(crate) fn named_types(resolve: &Resolve) -> HashMap<String, TypeId> {
    let mut out: HashMap<String, TypeId> = HashMap::new();
    for (id, _) in resolve.types.iter() {
        let Some(key) = type_key(resolve, id) else {
            continue;
        };
        match out.get(&key) {
            Some(&prev) if package_version(resolve, prev) >= package_version(resolve, id) => {}
            _ => {
                out.insert(key, id);
            }
        }
    }
    out
}

fn package_version(resolve: &Resolve, id: TypeId) -> Option<semver::Version> {
    let pkg = match resolve.types[id].owner {
        TypeOwner::Interface(i) => resolve.interfaces[i].package,
        TypeOwner::World(w) => resolve.worlds[w].package,
        TypeOwner::None => None,
    }?;
    resolve.packages[pkg].name.version.clone()
}

/// Follows `type a = b` and `use x.{b}` to the definition they name.
pub(crate) fn unalias(resolve: &Resolve, mut ty: Type) -> Type {
    // WIT has no recursive aliases, but a bound keeps a corrupt resolve
    // from looping forever.
    for _ in 0..64 {
        match ty {
            Type::Id(id) => match resolve.types[id].kind {
                TypeDefKind::Type(inner) => ty = inner,
                _ => return ty,
            },
            _ => return ty,
        }
    }
    ty
}

/// The short name of a function as reports show it: `get`, or
/// `fields.get` for a method, `fields.constructor` for a constructor.
pub(crate) fn function_name(resolve: &Resolve, func: &Function) -> String {
    let resource = |id: TypeId| {
        resolve.types[id]
            .name
            .clone()
            .unwrap_or_else(|| "<resource>".into())
    };
    match func.kind {
        FunctionKind::Freestanding | FunctionKind::AsyncFreestanding => func.name.clone(),
        FunctionKind::Constructor(id) => format!("{}.constructor", resource(id)),
        FunctionKind::Method(id)
        | FunctionKind::AsyncMethod(id)
        | FunctionKind::Static(id)
        | FunctionKind::AsyncStatic(id) => format!("{}.{}", resource(id), func.item_name()),
    }
}

/// What kind of function this is, as WIT spells it.
pub(crate) fn function_kind(func: &Function) -> &'static str {
    match func.kind {
        FunctionKind::Freestanding => "func",
        FunctionKind::AsyncFreestanding => "async func",
        FunctionKind::Method(_) => "method",
        FunctionKind::AsyncMethod(_) => "async method",
        FunctionKind::Static(_) => "static func",
        FunctionKind::AsyncStatic(_) => "static async func",
        FunctionKind::Constructor(_) => "constructor",
    }
}

/// A type as WIT text: named types by name, anonymous ones spelled out.
pub(crate) fn display(resolve: &Resolve, ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::U8 => "u8".into(),
        Type::U16 => "u16".into(),
        Type::U32 => "u32".into(),
        Type::U64 => "u64".into(),
        Type::S8 => "s8".into(),
        Type::S16 => "s16".into(),
        Type::S32 => "s32".into(),
        Type::S64 => "s64".into(),
        Type::F32 => "f32".into(),
        Type::F64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::ErrorContext => "error-context".into(),
        Type::Id(id) => {
            let def = &resolve.types[*id];
            match &def.name {
                Some(name) => name.clone(),
                None => display_def(resolve, &def.kind),
            }
        }
    }
}

/// A type definition's right-hand side as WIT text (`record { a: u32 }`).
pub(crate) fn display_def(resolve: &Resolve, kind: &TypeDefKind) -> String {
    let d = |t: &Type| display(resolve, t);
    let opt = |t: &Option<Type>| t.as_ref().map_or("_".to_string(), d);
    match kind {
        TypeDefKind::Record(r) => format!(
            "record {{ {} }}",
            r.fields
                .iter()
                .map(|f| format!("{}: {}", f.name, d(&f.ty)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        TypeDefKind::Resource => "resource".into(),
        TypeDefKind::Handle(Handle::Own(id)) => display(resolve, &Type::Id(*id)),
        TypeDefKind::Handle(Handle::Borrow(id)) => {
            format!("borrow<{}>", display(resolve, &Type::Id(*id)))
        }
        TypeDefKind::Flags(f) => format!(
            "flags {{ {} }}",
            f.flags
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        TypeDefKind::Tuple(t) => format!(
            "tuple<{}>",
            t.types.iter().map(d).collect::<Vec<_>>().join(", ")
        ),
        TypeDefKind::Variant(v) => format!(
            "variant {{ {} }}",
            v.cases
                .iter()
                .map(|c| match &c.ty {
                    Some(t) => format!("{}({})", c.name, d(t)),
                    None => c.name.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        TypeDefKind::Enum(e) => format!(
            "enum {{ {} }}",
            e.cases
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        TypeDefKind::Option(t) => format!("option<{}>", d(t)),
        TypeDefKind::Result(r) => match (&r.ok, &r.err) {
            (None, None) => "result".into(),
            (Some(ok), None) => format!("result<{}>", d(ok)),
            (ok, err) => format!("result<{}, {}>", opt(ok), opt(err)),
        },
        TypeDefKind::List(t) => format!("list<{}>", d(t)),
        TypeDefKind::Map(k, v) => format!("map<{}, {}>", d(k), d(v)),
        TypeDefKind::FixedLengthList(t, n) => format!("list<{}, {n}>", d(t)),
        TypeDefKind::Future(t) => match t {
            Some(t) => format!("future<{}>", d(t)),
            None => "future".into(),
        },
        TypeDefKind::Stream(t) => match t {
            Some(t) => format!("stream<{}>", d(t)),
            None => "stream".into(),
        },
        TypeDefKind::Type(t) => d(t),
        TypeDefKind::Unknown => "<unknown>".into(),
    }
}
