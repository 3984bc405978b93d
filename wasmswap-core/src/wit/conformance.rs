//! Does a component implement a registered interface, and can a host
//! satisfy everything it imports?

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use wit_parser::{InterfaceId, PackageName, Resolve, WorldItem, WorldKey};

use super::diff::{Differ, Role};
use super::package::{WitError, WitInterface, WitPackage, WitWorld};
use super::report::{Change, ChangeKind, Compatibility};
use super::types::interface_key;

/// The answer of a conformance check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conformance {
    /// Everything required is there, with compatible types.
    pub satisfied: bool,
    /// What is missing or incompatible, one line each.
    pub problems: Vec<String>,
    /// The changes behind the problems, as a diff reports them (from what
    /// is required to what is there).
    pub changes: Vec<Change>,
}

impl Conformance {
    fn from_problems(problems: Vec<String>, changes: Vec<Change>) -> Self {
        Conformance {
            satisfied: problems.is_empty(),
            problems,
            changes,
        }
    }
}

/// Versions on the same semver track: 1.x.y with 1.z.w, 0.2.x with 0.2.y,
/// 0.0.1 only with itself. Wasmtime links imports along the same tracks.
fn same_track(a: Option<&semver::Version>, b: Option<&semver::Version>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            PackageName::version_compat_track(a) == PackageName::version_compat_track(b)
        }
        _ => false,
    }
}

fn version_of(resolve: &Resolve, id: InterfaceId) -> Option<&semver::Version> {
    let pkg = resolve.interfaces[id].package?;
    resolve.packages[pkg].name.version.as_ref()
}

fn shown(resolve: &Resolve, id: InterfaceId) -> String {
    resolve
        .id_of(id)
        .unwrap_or_else(|| "<inline interface>".into())
}

/// Changes (from what is required to what is there) that break callers, or
/// that alter the canonical ABI: a component's imports and exports are
/// linked, and wasmtime type-checks a link exactly, so a widened integer
/// that a JSON caller would not notice still fails to instantiate.
fn linking_problems(diff: &super::Diff) -> impl Iterator<Item = &Change> {
    diff.changes
        .iter()
        .filter(|c| Compatibility::Callers.is_broken_by(c) || c.abi_breaking)
}

/// One line for a conformance problem: what is missing, or what changed
/// and why it breaks.
fn problem(c: &Change, missing: &str, breaks: &str, abi: &str) -> String {
    match c.kind {
        ChangeKind::FunctionRemoved { .. } => format!("{}: {missing}", c.path),
        _ if c.callers.is_breaking() => format!("{}: {}{breaks} ({})", c.path, c.kind, c.reason),
        _ => format!("{}: {}{abi}", c.path, c.kind),
    }
}

/// Checks that `component` exports `contract`: an export of the same
/// interface on the same semver track, whose every function and type works
/// for callers written against the contract.
pub fn check_exports(component: &WitWorld, contract: &WitInterface) -> Conformance {
    let (cr, cid) = (&*contract.resolve, contract.interface);
    let Some(key) = interface_key(cr, cid) else {
        return Conformance::from_problems(
            vec!["the contract is an anonymous interface".into()],
            vec![],
        );
    };
    let wr = &*component.resolve;
    let world = &wr.worlds[component.world];
    let found = world.exports.values().find_map(|item| match item {
        WorldItem::Interface { id, .. } if interface_key(wr, *id).as_deref() == Some(&key) => {
            Some(*id)
        }
        _ => None,
    });
    let Some(export) = found else {
        let exports: Vec<String> = world.exports.keys().map(|k| wr.name_world_key(k)).collect();
        return Conformance::from_problems(
            vec![format!(
                "the component does not export {} (it exports: {})",
                shown(cr, cid),
                if exports.is_empty() {
                    "nothing".into()
                } else {
                    exports.join(", ")
                }
            )],
            vec![],
        );
    };
    if !same_track(version_of(cr, cid), version_of(wr, export)) {
        return Conformance::from_problems(
            vec![format!(
                "the component exports {}, which is not semver-compatible with {}",
                shown(wr, export),
                shown(cr, cid)
            )],
            vec![],
        );
    }
    let mut differ = Differ::new(cr, wr);
    differ.interface(cid, export, Role::Direct, None);
    let diff = differ.finish(shown(cr, cid), shown(wr, export));
    let broken: Vec<Change> = linking_problems(&diff).cloned().collect();
    let problems = broken
        .iter()
        .map(|c| {
            problem(
                c,
                "the contract requires it but the component does not export it",
                ", so callers of the contract break",
                ", which changes the ABI callers link against",
            )
        })
        .collect();
    Conformance::from_problems(problems, broken)
}

/// The interfaces a host implements for the components it runs.
#[derive(Clone, Default)]
pub struct HostInterfaces {
    provided: Vec<(Arc<Resolve>, InterfaceId)>,
}

impl std::fmt::Debug for HostInterfaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl HostInterfaces {
    /// Nothing provided.
    pub fn empty() -> Self {
        HostInterfaces {
            provided: Vec::new(),
        }
    }

    /// Adds every interface `world` imports: a host for a world provides
    /// its imports.
    pub fn with_world_imports(mut self, world: &WitWorld) -> Self {
        let w = &world.resolve.worlds[world.world];
        for item in w.imports.values() {
            if let WorldItem::Interface { id, .. } = item
                && world.resolve.interfaces[*id].name.is_some()
            {
                self.provided.push((world.resolve.clone(), *id));
            }
        }
        self
    }

    /// Adds one interface.
    pub fn with_interface(mut self, iface: &WitInterface) -> Self {
        self.provided.push((iface.resolve.clone(), iface.interface));
        self
    }

    /// What a wasmswap runtime links for components: the imports of
    /// `wasi:cli/command` at WASI 0.2.12 and, with the `http` feature, of
    /// `wasi:http/proxy`. Wasmtime serves every 0.2.x import from these.
    pub fn wasmswap() -> &'static HostInterfaces {
        static HOST: OnceLock<HostInterfaces> = OnceLock::new();
        HOST.get_or_init(|| wasmswap_host().expect("the vendored WASI WIT parses"))
    }

    /// `namespace:package/interface@version` of everything provided.
    pub fn names(&self) -> Vec<String> {
        self.provided.iter().map(|(r, id)| shown(r, *id)).collect()
    }

    /// The provided interface with `key` on the same track as `version`;
    /// the latest if several are.
    fn find(
        &self,
        key: &str,
        version: Option<&semver::Version>,
    ) -> Option<&(Arc<Resolve>, InterfaceId)> {
        self.provided
            .iter()
            .filter(|(r, id)| interface_key(r, *id).as_deref() == Some(key))
            .filter(|(r, id)| same_track(version, version_of(r, *id)))
            .max_by(|(r, a), (s, b)| version_of(r, *a).cmp(&version_of(s, *b)))
    }
}

/// The vendored WASI 0.2.12 WIT, as `wasmtime-wasi-http` 48 ships it.
const WASI_0_2_12: &[(&str, &str)] = &[
    (
        "wasi-0.2.12/io.wit",
        include_str!("../../wit/wasi-0.2.12/deps/io.wit"),
    ),
    (
        "wasi-0.2.12/clocks.wit",
        include_str!("../../wit/wasi-0.2.12/deps/clocks.wit"),
    ),
    (
        "wasi-0.2.12/random.wit",
        include_str!("../../wit/wasi-0.2.12/deps/random.wit"),
    ),
    (
        "wasi-0.2.12/filesystem.wit",
        include_str!("../../wit/wasi-0.2.12/deps/filesystem.wit"),
    ),
    (
        "wasi-0.2.12/sockets.wit",
        include_str!("../../wit/wasi-0.2.12/deps/sockets.wit"),
    ),
    (
        "wasi-0.2.12/cli.wit",
        include_str!("../../wit/wasi-0.2.12/deps/cli.wit"),
    ),
    (
        "wasi-0.2.12/http.wit",
        include_str!("../../wit/wasi-0.2.12/http.wit"),
    ),
];

/// The WASI 0.2.12 packages wasmswap links, `wasi:http` first with the
/// rest as its dependencies.
pub fn wasi_0_2_12() -> Result<WitPackage, WitError> {
    let (main, deps) = WASI_0_2_12.split_last().expect("not empty");
    let deps: Vec<&[(&str, &str)]> = deps.iter().map(std::slice::from_ref).collect();
    WitPackage::parse_files(std::slice::from_ref(main), &deps)
}

fn wasmswap_host() -> Result<HostInterfaces, WitError> {
    let http = wasi_0_2_12()?;
    let mut host =
        HostInterfaces::empty().with_world_imports(&http.dependency("wasi:cli")?.world("command")?);
    if cfg!(feature = "http") {
        host = host.with_world_imports(&http.world("proxy")?);
    }
    Ok(host)
}

/// Checks that `host` can satisfy every import of `component`: each
/// imported interface is provided on the same semver track with every
/// function and type the component uses.
pub fn check_imports(component: &WitWorld, host: &HostInterfaces) -> Conformance {
    let wr = &*component.resolve;
    let world = &wr.worlds[component.world];
    let mut problems = Vec::new();
    let mut changes = Vec::new();
    for (key, item) in &world.imports {
        match item {
            WorldItem::Interface { id, .. } => {
                let Some(ikey) = interface_key(wr, *id) else {
                    problems.push(format!(
                        "imports the inline interface `{}`, which no host provides",
                        wr.name_world_key(key)
                    ));
                    continue;
                };
                let version = version_of(wr, *id);
                let Some((hr, hid)) = host.find(&ikey, version) else {
                    problems.push(format!(
                        "imports {}, which the host does not provide",
                        shown(wr, *id)
                    ));
                    continue;
                };
                let mut differ = Differ::new(wr, hr);
                differ.interface(*id, *hid, Role::Direct, None);
                let diff = differ.finish(shown(wr, *id), shown(hr, *hid));
                let host_name = shown(hr, *hid);
                for c in linking_problems(&diff) {
                    problems.push(problem(
                        c,
                        &format!("the component calls it but the host's {host_name} lacks it"),
                        &format!(" in the host's {host_name}"),
                        &format!(
                            " in the host's {host_name}, which changes the ABI and fails to link"
                        ),
                    ));
                    changes.push(c.clone());
                }
            }
            WorldItem::Function(f) => {
                let name = match key {
                    WorldKey::Name(n) => n.clone(),
                    WorldKey::Interface(_) => f.name.clone(),
                };
                problems.push(format!(
                    "imports the function `{name}` directly, which no host provides"
                ));
            }
            WorldItem::Type { .. } => {}
        }
    }
    Conformance::from_problems(problems, changes)
}
