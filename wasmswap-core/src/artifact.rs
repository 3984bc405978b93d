//! [`Artifact`]: a validated, compiled module or component, identified by the
//! SHA-256 of its bytes, with what it imports and exports.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;

use crate::json;

/// SHA-256 of a binary: the identity of an [`Artifact`] everywhere (caches,
/// node agent API, control plane).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentId([u8; 32]);

impl ContentId {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({self})")
    }
}

impl Serialize for ContentId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ContentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_hex(&s).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// Core module or component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    /// A core WebAssembly module.
    Module,
    /// A component (component model).
    Component,
}

/// Which WASI a binary imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WasiVersion {
    /// `wasi_snapshot_preview1`, for core modules.
    P1,
    /// WASI 0.2 interfaces (`wasi:cli`, `wasi:http`, ...), for components.
    P2,
}

/// An exported function and its signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportInfo {
    /// The name to invoke it by: `add`, or `wasmswap:guests/api@0.1.0#echo`
    /// for a function inside an exported interface.
    pub name: String,
    /// `(i32, i32) -> (i32)` for core functions, `func(a: u8) -> u8` for
    /// component functions.
    pub signature: String,
}

/// What loading learned about a binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactInfo {
    /// SHA-256 of the binary.
    pub id: ContentId,
    /// Module or component.
    pub kind: ArtifactKind,
    /// Which WASI it imports, if any.
    pub wasi: Option<WasiVersion>,
    /// Size of the binary in bytes.
    pub size_bytes: usize,
    /// Imports: `module::name` for core modules, interface names for components.
    pub imports: Vec<String>,
    /// Exported functions with their signatures.
    pub exports: Vec<ExportInfo>,
    /// For components: the component's own world, as WIT text.
    pub wit: Option<String>,
}

#[derive(Clone)]
pub(crate) enum Compiled {
    Module(wasmtime::Module),
    Component(wasmtime::component::Component),
}

/// A validated, compiled binary. Cheap to clone; shared by every version and
/// service that runs the same bytes.
#[derive(Clone)]
pub struct Artifact {
    pub(crate) inner: Arc<ArtifactInner>,
}

pub(crate) struct ArtifactInner {
    pub(crate) info: ArtifactInfo,
    pub(crate) compiled: Compiled,
}

impl fmt::Debug for Artifact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Artifact")
            .field("id", &self.inner.info.id)
            .field("kind", &self.inner.info.kind)
            .finish_non_exhaustive()
    }
}

impl Artifact {
    /// SHA-256 of the binary.
    pub fn id(&self) -> ContentId {
        self.inner.info.id
    }

    /// Everything loading learned about the binary.
    pub fn info(&self) -> &ArtifactInfo {
        &self.inner.info
    }

    /// Module or component.
    pub fn kind(&self) -> ArtifactKind {
        self.inner.info.kind
    }
}

/// Lists the exported functions of a compiled binary with their signatures.
pub(crate) fn exports(engine: &wasmtime::Engine, compiled: &Compiled) -> Vec<ExportInfo> {
    let mut out = Vec::new();
    match compiled {
        Compiled::Module(m) => {
            for e in m.exports() {
                if let wasmtime::ExternType::Func(f) = e.ty() {
                    out.push(ExportInfo {
                        name: e.name().to_string(),
                        signature: json::core_signature(&f),
                    });
                }
            }
        }
        Compiled::Component(c) => {
            for (name, item) in c.component_type().exports(engine) {
                match item.ty {
                    ComponentItem::ComponentFunc(f) => out.push(ExportInfo {
                        name: name.to_string(),
                        signature: json::component_signature(&f),
                    }),
                    ComponentItem::ComponentInstance(inst) => {
                        for (fname, fitem) in inst.exports(engine) {
                            if let ComponentItem::ComponentFunc(f) = fitem.ty {
                                out.push(ExportInfo {
                                    name: format!("{name}#{fname}"),
                                    signature: json::component_signature(&f),
                                });
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

/// Decodes a component's own world and prints it as WIT. `None` for core
/// modules or when the component carries no decodable type information.
pub(crate) fn component_wit(bytes: &[u8]) -> Option<String> {
    crate::wit::WitWorld::from_component(bytes)
        .ok()?
        .to_wit()
        .ok()
}
