//! Parsed WIT: packages from text or files, worlds and interfaces inside
//! them, and the world a component binary was built for.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wit_parser::{
    InterfaceId, PackageId, ParseError, Resolve, ResolveError, SourceMap, Span,
    UnresolvedPackageGroup, WorldId,
};

/// Where in which WIT file a problem is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// The file name as given to the parser.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// WIT that does not parse or resolve, or a name that is not in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "camelCase")]
pub struct WitError {
    /// The file, line and column the problem is at, when it has one.
    pub location: Option<Location>,
    /// What is wrong, in one line.
    pub message: String,
    /// The message with the offending source line underlined, for people.
    pub rendered: String,
}

impl fmt::Display for WitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(at) => write!(f, "{at}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl WitError {
    pub(crate) fn msg(message: impl Into<String>) -> Self {
        let message = message.into();
        WitError {
            location: None,
            rendered: message.clone(),
            message,
        }
    }

    fn at(map: &SourceMap, span: Span, message: String, rendered: String) -> Self {
        WitError {
            location: location(map, span),
            message: first_line(&message),
            rendered,
        }
    }

    fn from_parse(map: &SourceMap, e: &ParseError) -> Self {
        Self::at(map, e.kind().span(), e.to_string(), e.render(map))
    }

    fn from_resolve(map: &SourceMap, e: &ResolveError) -> Self {
        Self::at(map, e.kind().span(), e.to_string(), e.render(map))
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

/// `wit-parser` renders locations as `file:line:col`; the file may itself
/// contain colons, so split from the right.
fn location(map: &SourceMap, span: Span) -> Option<Location> {
    if !span.is_known() {
        return None;
    }
    let text = map.render_location(span);
    let mut parts = text.rsplitn(3, ':');
    let column = parts.next()?.parse().ok()?;
    let line = parts.next()?.parse().ok()?;
    let file = parts.next()?.to_string();
    Some(Location { file, line, column })
}

/// `wit-parser` 0.254–0.258 panics on the empty doc comment `/**/` (it
/// strips `/**` and then cannot find `*/`). An empty comment is whitespace,
/// so blank it out, keeping every offset (and so every error location).
fn sanitize(text: &str) -> String {
    text.replace("/**/", "    ")
}

/// Runs a `wit-parser` call so that a panic inside it (a parser bug on
/// hostile input) becomes an error instead of taking the process down.
fn guarded<T>(f: impl FnOnce() -> Result<T, WitError>) -> Result<T, WitError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let why = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::warn!(%why, "wit-parser panicked");
            Err(WitError::msg(format!(
                "the WIT parser failed on this input: {why}"
            )))
        }
    }
}

fn read_wit_file(path: &Path) -> Result<(String, String), WitError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| WitError::msg(format!("cannot read {}: {e}", path.display())))?;
    Ok((path.display().to_string(), text))
}

fn sorted_entries(dir: &Path) -> Result<Vec<std::path::PathBuf>, WitError> {
    let read = std::fs::read_dir(dir)
        .map_err(|e| WitError::msg(format!("cannot read directory {}: {e}", dir.display())))?;
    let mut out: Vec<_> = read.filter_map(|e| e.ok().map(|e| e.path())).collect();
    out.sort();
    Ok(out)
}

fn borrow(files: &[(String, String)]) -> Vec<(&str, &str)> {
    files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect()
}

/// Every `*.wit` file directly in `dir`: one package.
fn read_wit_dir(dir: &Path) -> Result<Vec<(String, String)>, WitError> {
    let files: Vec<_> = sorted_entries(dir)?
        .into_iter()
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "wit"))
        .map(|p| read_wit_file(&p))
        .collect::<Result<_, _>>()?;
    if files.is_empty() {
        return Err(WitError::msg(format!(
            "no *.wit files in {}",
            dir.display()
        )));
    }
    Ok(files)
}

/// `wit-parser` accepts a record, variant, enum or flags type that names a
/// member twice (the component model does not); refuse it here, with the
/// duplicate's location. Found by the `wit_diff` fuzz target.
fn check_unique_names(resolve: &Resolve) -> Result<(), WitError> {
    use wit_parser::TypeDefKind;
    for (_, def) in resolve.types.iter() {
        let members: Vec<(&str, Span)> = match &def.kind {
            TypeDefKind::Record(r) => r.fields.iter().map(|f| (f.name.as_str(), f.span)).collect(),
            TypeDefKind::Variant(v) => v.cases.iter().map(|c| (c.name.as_str(), c.span)).collect(),
            TypeDefKind::Enum(e) => e.cases.iter().map(|c| (c.name.as_str(), c.span)).collect(),
            TypeDefKind::Flags(f) => f.flags.iter().map(|f| (f.name.as_str(), f.span)).collect(),
            _ => continue,
        };
        let mut seen = std::collections::HashSet::new();
        for (name, span) in members {
            if !seen.insert(name) {
                let what = def.kind.as_str();
                let owner = def.name.as_deref().unwrap_or("<anonymous>");
                let message = format!("{what} `{owner}` has two members named `{name}`");
                let at = resolve.source_map.render_location(span);
                let rendered = format!("{message}\n     --> {at}");
                return Err(WitError::at(&resolve.source_map, span, message, rendered));
            }
        }
    }
    Ok(())
}

/// A resolved WIT package, with every package it depends on.
///
/// Items gated by `@unstable(feature = …)` are kept (all features are on),
/// so a diff can say what happened to them.
#[derive(Clone)]
pub struct WitPackage {
    pub(crate) resolve: Arc<Resolve>,
    pub(crate) package: PackageId,
}

impl fmt::Debug for WitPackage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WitPackage")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

fn new_resolve() -> Resolve {
    let mut resolve = Resolve::new();
    resolve.all_features = true;
    resolve
}

fn parse_group(files: &[(&str, &str)]) -> Result<UnresolvedPackageGroup, WitError> {
    if files.is_empty() {
        return Err(WitError::msg("no WIT files given"));
    }
    let mut map = SourceMap::new();
    for (path, text) in files {
        map.push_str(path, sanitize(text));
    }
    map.parse()
        .map_err(|(map, e)| WitError::from_parse(&map, &e))
}

impl WitPackage {
    /// Parses one WIT file. It may hold nested `package … { }` blocks that
    /// the main package uses. `path` only names the file in errors.
    pub fn parse(path: &str, text: &str) -> Result<Self, WitError> {
        Self::parse_files(&[(path, text)], &[])
    }

    /// Parses a package split over several files (`(path, text)` pairs; each
    /// file has its own `use` scope, as in a WIT directory), resolving it
    /// against `deps`, each dependency a package of one or more files.
    pub fn parse_files(files: &[(&str, &str)], deps: &[&[(&str, &str)]]) -> Result<Self, WitError> {
        guarded(|| Self::parse_files_unguarded(files, deps))
    }

    fn parse_files_unguarded(
        files: &[(&str, &str)],
        deps: &[&[(&str, &str)]],
    ) -> Result<Self, WitError> {
        let main = parse_group(files)?;
        let deps = deps
            .iter()
            .map(|d| parse_group(d))
            .collect::<Result<Vec<_>, _>>()?;
        let mut resolve = new_resolve();
        let package = resolve
            .push_groups(main, deps)
            .map_err(|e| WitError::from_resolve(&resolve.source_map, &e))?;
        check_unique_names(&resolve)?;
        Ok(WitPackage {
            resolve: Arc::new(resolve),
            package,
        })
    }

    /// Reads a WIT file, or a directory of `*.wit` files with an optional
    /// `deps/` directory (each dependency a `*.wit` file or a directory of
    /// them), as `wit-bindgen` and `cargo component` lay them out.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, WitError> {
        let path = path.as_ref();
        let main = if path.is_dir() {
            read_wit_dir(path)?
        } else {
            vec![read_wit_file(path)?]
        };
        let mut deps = Vec::new();
        let deps_dir = path.join("deps");
        if path.is_dir() && deps_dir.is_dir() {
            for entry in sorted_entries(&deps_dir)? {
                if entry.is_dir() {
                    deps.push(read_wit_dir(&entry)?);
                } else if entry.extension().is_some_and(|e| e == "wit") {
                    deps.push(vec![read_wit_file(&entry)?]);
                }
            }
        }
        let main = borrow(&main);
        let deps: Vec<Vec<(&str, &str)>> = deps.iter().map(|d| borrow(d)).collect();
        let deps: Vec<&[(&str, &str)]> = deps.iter().map(Vec::as_slice).collect();
        Self::parse_files(&main, &deps)
    }

    /// `namespace:name@version` (the version only when there is one).
    pub fn name(&self) -> String {
        self.resolve.packages[self.package].name.to_string()
    }

    /// The package's version, if it declares one.
    pub fn version(&self) -> Option<&semver::Version> {
        self.resolve.packages[self.package].name.version.as_ref()
    }

    /// Names of the interfaces the package defines, in source order.
    pub fn interface_names(&self) -> Vec<String> {
        self.resolve.packages[self.package]
            .interfaces
            .keys()
            .cloned()
            .collect()
    }

    /// Names of the worlds the package defines, in source order.
    pub fn world_names(&self) -> Vec<String> {
        self.resolve.packages[self.package]
            .worlds
            .keys()
            .cloned()
            .collect()
    }

    /// One interface of this package, by its short name (`types`).
    pub fn interface(&self, name: &str) -> Result<WitInterface, WitError> {
        let id = self.resolve.packages[self.package]
            .interfaces
            .get(name)
            .copied()
            .ok_or_else(|| {
                WitError::msg(format!(
                    "package {} has no interface `{name}` (it has: {})",
                    self.name(),
                    self.interface_names().join(", ")
                ))
            })?;
        Ok(WitInterface {
            resolve: self.resolve.clone(),
            interface: id,
        })
    }

    /// One world of this package, by its short name (`proxy`).
    pub fn world(&self, name: &str) -> Result<WitWorld, WitError> {
        let id = self.resolve.packages[self.package]
            .worlds
            .get(name)
            .copied()
            .ok_or_else(|| {
                WitError::msg(format!(
                    "package {} has no world `{name}` (it has: {})",
                    self.name(),
                    self.world_names().join(", ")
                ))
            })?;
        Ok(WitWorld {
            resolve: self.resolve.clone(),
            world: id,
        })
    }

    /// Another package this one's resolve holds (a dependency), by
    /// `namespace:name@version`, or by `namespace:name` for its latest
    /// version there.
    pub fn dependency(&self, name: &str) -> Result<WitPackage, WitError> {
        let found = self
            .resolve
            .packages
            .iter()
            .filter(|(_, p)| {
                let full = p.name.to_string();
                full == name || format!("{}:{}", p.name.namespace, p.name.name) == name
            })
            .max_by(|(_, a), (_, b)| a.name.version.cmp(&b.name.version));
        match found {
            Some((id, _)) => Ok(WitPackage {
                resolve: self.resolve.clone(),
                package: id,
            }),
            None => Err(WitError::msg(format!(
                "no package `{name}` among {}'s dependencies",
                self.name()
            ))),
        }
    }

    /// The underlying `wit-parser` resolve, for anything this API leaves out.
    pub fn resolve(&self) -> &Resolve {
        &self.resolve
    }

    /// The package's id in [`WitPackage::resolve`].
    pub fn id(&self) -> PackageId {
        self.package
    }

    /// The package printed back as WIT text.
    pub fn to_wit(&self) -> Result<String, WitError> {
        let mut printer = wit_component::WitPrinter::default();
        printer
            .print(&self.resolve, self.package, &[])
            .map_err(|e| WitError::msg(format!("cannot print {}: {e:#}", self.name())))?;
        Ok(printer.output.to_string())
    }
}

/// One interface inside a resolved package.
#[derive(Clone)]
pub struct WitInterface {
    pub(crate) resolve: Arc<Resolve>,
    pub(crate) interface: InterfaceId,
}

impl fmt::Debug for WitInterface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WitInterface")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

impl WitInterface {
    /// `namespace:package/name@version`.
    pub fn name(&self) -> String {
        self.resolve
            .id_of(self.interface)
            .unwrap_or_else(|| "<anonymous interface>".to_string())
    }

    /// The version of the package the interface belongs to.
    pub fn version(&self) -> Option<&semver::Version> {
        let pkg = self.resolve.interfaces[self.interface].package?;
        self.resolve.packages[pkg].name.version.as_ref()
    }

    /// The underlying `wit-parser` resolve.
    pub fn resolve(&self) -> &Resolve {
        &self.resolve
    }

    /// The interface's id in [`WitInterface::resolve`].
    pub fn id(&self) -> InterfaceId {
        self.interface
    }
}

/// A world: one inside a package, or the world a component was built for.
#[derive(Clone)]
pub struct WitWorld {
    pub(crate) resolve: Arc<Resolve>,
    pub(crate) world: WorldId,
}

impl fmt::Debug for WitWorld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WitWorld")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

impl WitWorld {
    /// Decodes the world a component binary targets: its imports and
    /// exports with their full types, from the binary's own type section.
    pub fn from_component(bytes: &[u8]) -> Result<Self, WitError> {
        if !wasmparser::Parser::is_component(bytes) {
            let what = if wasmparser::Parser::is_core_wasm(bytes) {
                "a core module, which has no WIT world"
            } else {
                "not WebAssembly (no `\\0asm` header)"
            };
            return Err(WitError::msg(format!(
                "cannot decode a WIT world: the binary is {what}"
            )));
        }
        match guarded(|| Ok(wit_component::decode(bytes)))? {
            Ok(wit_component::DecodedWasm::Component(resolve, world)) => Ok(WitWorld {
                resolve: Arc::new(resolve),
                world,
            }),
            Ok(wit_component::DecodedWasm::WitPackage(..)) => Err(WitError::msg(
                "the binary is a WIT package, not a component",
            )),
            Err(e) => Err(WitError::msg(format!(
                "cannot decode the component's WIT: {e:#}"
            ))),
        }
    }

    /// `namespace:package/world@version`, or the world's bare name when it
    /// belongs to no package.
    pub fn name(&self) -> String {
        let world = &self.resolve.worlds[self.world];
        match world.package {
            Some(p) => self.resolve.id_of_name(p, &world.name),
            None => world.name.clone(),
        }
    }

    /// The world printed as WIT text (with its package).
    pub fn to_wit(&self) -> Result<String, WitError> {
        let world = &self.resolve.worlds[self.world];
        let pkg = world
            .package
            .ok_or_else(|| WitError::msg("the world belongs to no package"))?;
        let mut printer = wit_component::WitPrinter::default();
        printer
            .print(&self.resolve, pkg, &[])
            .map_err(|e| WitError::msg(format!("cannot print {}: {e:#}", self.name())))?;
        Ok(printer.output.to_string())
    }

    /// The underlying `wit-parser` resolve.
    pub fn resolve(&self) -> &Resolve {
        &self.resolve
    }

    /// The world's id in [`WitWorld::resolve`].
    pub fn id(&self) -> WorldId {
        self.world
    }
}
