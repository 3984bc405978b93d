//! The result of a diff: each change with its path and verdicts, as a
//! serde value and as a text report for people.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Whether a change keeps existing code working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Code written against the old version keeps working.
    Compatible,
    /// Code written against the old version can fail.
    Breaking,
}

impl Verdict {
    /// `true` for [`Verdict::Breaking`].
    pub fn is_breaking(self) -> bool {
        self == Verdict::Breaking
    }
}

/// Who a compatibility promise protects; also the policy a registered
/// interface declares (as schema registries do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compatibility {
    /// Existing callers (importers) must keep working: the usual promise of
    /// an API, and the default.
    #[default]
    Callers,
    /// Existing implementations (exporters) must keep working.
    Implementers,
    /// Both.
    Both,
    /// No promise: every change is allowed.
    #[serde(rename = "none")]
    NoPromise,
}

impl Compatibility {
    /// Whether `change` breaks someone this policy protects.
    pub fn is_broken_by(self, change: &Change) -> bool {
        match self {
            Compatibility::Callers => change.callers.is_breaking(),
            Compatibility::Implementers => change.implementers.is_breaking(),
            Compatibility::Both => {
                change.callers.is_breaking() || change.implementers.is_breaking()
            }
            Compatibility::NoPromise => false,
        }
    }
}

/// What changed. Type texts are WIT (`list<u8>`, `option<my-record>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
#[serde(
    tag = "change",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum ChangeKind {
    /// A package gained an interface.
    InterfaceAdded,
    /// A package lost an interface.
    InterfaceRemoved,
    /// A package gained a world.
    WorldAdded,
    /// A package lost a world.
    WorldRemoved,
    /// A world imports something new (an interface, function or type).
    ImportAdded,
    /// A world no longer imports something.
    ImportRemoved,
    /// A world exports something new.
    ExportAdded,
    /// A world no longer exports something.
    ExportRemoved,
    /// A world item changed what it is (an interface became a function…).
    ItemKindChanged {
        /// Before.
        old: String,
        /// After.
        new: String,
    },
    /// A function (or resource method, static or constructor) was added.
    FunctionAdded {
        /// Its signature.
        signature: String,
    },
    /// A function was removed.
    FunctionRemoved {
        /// Its old signature.
        signature: String,
    },
    /// Sync became async, a method became static, and the like.
    FunctionKindChanged {
        /// Before.
        old: String,
        /// After.
        new: String,
    },
    /// A parameter was added.
    ParamAdded {
        /// The parameter.
        param: String,
        /// Its type.
        #[serde(rename = "type")]
        ty: String,
    },
    /// A parameter was removed.
    ParamRemoved {
        /// The parameter.
        param: String,
        /// Its old type.
        #[serde(rename = "type")]
        ty: String,
    },
    /// A parameter's type changed.
    ParamTypeChanged {
        /// The parameter.
        param: String,
        /// Before.
        old: String,
        /// After.
        new: String,
    },
    /// The same parameters in another order.
    ParamsReordered {
        /// Old order.
        old: Vec<String>,
        /// New order.
        new: Vec<String>,
    },
    /// A function that returned nothing now returns a value.
    ResultAdded {
        /// The result type.
        #[serde(rename = "type")]
        ty: String,
    },
    /// A function no longer returns a value.
    ResultRemoved {
        /// The old result type.
        #[serde(rename = "type")]
        ty: String,
    },
    /// A function's result type changed.
    ResultTypeChanged {
        /// Before.
        old: String,
        /// After.
        new: String,
    },
    /// A named type was added.
    TypeAdded {
        /// Its definition.
        definition: String,
    },
    /// A named type was removed.
    TypeRemoved {
        /// Its old definition.
        definition: String,
    },
    /// A named type's definition changed as a whole (another kind, another
    /// alias target, another element type).
    TypeChanged {
        /// Before.
        old: String,
        /// After.
        new: String,
    },
    /// A record gained a field.
    FieldAdded {
        /// The field's type.
        #[serde(rename = "type")]
        ty: String,
    },
    /// A record lost a field.
    FieldRemoved {
        /// The field's old type.
        #[serde(rename = "type")]
        ty: String,
    },
    /// A record field's type changed.
    FieldTypeChanged {
        /// Before.
        old: String,
        /// After.
        new: String,
    },
    /// A record's fields in another order.
    FieldsReordered {
        /// Old order.
        old: Vec<String>,
        /// New order.
        new: Vec<String>,
    },
    /// A variant or enum gained a case.
    CaseAdded {
        /// The case's payload type, if it has one.
        payload: Option<String>,
    },
    /// A variant or enum lost a case.
    CaseRemoved {
        /// The case's old payload type, if it had one.
        payload: Option<String>,
    },
    /// A variant case's payload changed.
    CasePayloadChanged {
        /// Before.
        old: Option<String>,
        /// After.
        new: Option<String>,
    },
    /// A variant's or enum's cases in another order (their discriminants change).
    CasesReordered {
        /// Old order.
        old: Vec<String>,
        /// New order.
        new: Vec<String>,
    },
    /// A flags type gained a flag.
    FlagAdded,
    /// A flags type lost a flag.
    FlagRemoved,
    /// Flags in another order (their bits change).
    FlagsReordered {
        /// Old order.
        old: Vec<String>,
        /// New order.
        new: Vec<String>,
    },
    /// An `@unstable` item became `@since` (stable).
    Stabilized {
        /// The feature gate it had.
        feature: String,
    },
    /// A stable item became `@unstable`.
    MadeUnstable {
        /// The feature gate it now has.
        feature: String,
    },
    /// An item was marked `@deprecated`.
    Deprecated {
        /// The version it was deprecated in.
        version: String,
    },
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ChangeKind::*;
        let list = |v: &[String]| v.join(", ");
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "no payload".into());
        match self {
            InterfaceAdded => write!(f, "interface added"),
            InterfaceRemoved => write!(f, "interface removed"),
            WorldAdded => write!(f, "world added"),
            WorldRemoved => write!(f, "world removed"),
            ImportAdded => write!(f, "import added"),
            ImportRemoved => write!(f, "import removed"),
            ExportAdded => write!(f, "export added"),
            ExportRemoved => write!(f, "export removed"),
            ItemKindChanged { old, new } => write!(f, "changed from {old} to {new}"),
            FunctionAdded { signature } => write!(f, "function added: {signature}"),
            FunctionRemoved { signature } => write!(f, "function removed: {signature}"),
            FunctionKindChanged { old, new } => write!(f, "changed from {old} to {new}"),
            ParamAdded { param, ty } => write!(f, "parameter `{param}: {ty}` added"),
            ParamRemoved { param, ty } => write!(f, "parameter `{param}: {ty}` removed"),
            ParamTypeChanged { param, old, new } => {
                write!(f, "parameter `{param}` changed from {old} to {new}")
            }
            ParamsReordered { old, new } => {
                write!(
                    f,
                    "parameters reordered from ({}) to ({})",
                    list(old),
                    list(new)
                )
            }
            ResultAdded { ty } => write!(f, "result `{ty}` added"),
            ResultRemoved { ty } => write!(f, "result `{ty}` removed"),
            ResultTypeChanged { old, new } => write!(f, "result changed from {old} to {new}"),
            TypeAdded { definition } => write!(f, "type added: {definition}"),
            TypeRemoved { definition } => write!(f, "type removed: {definition}"),
            TypeChanged { old, new } => write!(f, "type changed from {old} to {new}"),
            FieldAdded { ty } => write!(f, "field added: {ty}"),
            FieldRemoved { ty } => write!(f, "field removed: {ty}"),
            FieldTypeChanged { old, new } => write!(f, "field changed from {old} to {new}"),
            FieldsReordered { old, new } => {
                write!(
                    f,
                    "fields reordered from ({}) to ({})",
                    list(old),
                    list(new)
                )
            }
            CaseAdded { payload } => write!(f, "case added ({})", opt(payload)),
            CaseRemoved { payload } => write!(f, "case removed ({})", opt(payload)),
            CasePayloadChanged { old, new } => {
                write!(f, "case payload changed from {} to {}", opt(old), opt(new))
            }
            CasesReordered { old, new } => {
                write!(f, "cases reordered from ({}) to ({})", list(old), list(new))
            }
            FlagAdded => write!(f, "flag added"),
            FlagRemoved => write!(f, "flag removed"),
            FlagsReordered { old, new } => {
                write!(f, "flags reordered from ({}) to ({})", list(old), list(new))
            }
            Stabilized { feature } => write!(f, "stabilized (was @unstable(feature = {feature}))"),
            MadeUnstable { feature } => write!(f, "made @unstable(feature = {feature})"),
            Deprecated { version } => write!(f, "deprecated in {version}"),
        }
    }
}

/// One change, where it is, and whom it breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// The changed item: `wasi:http/types@0.2.12#fields.get`, a record field
    /// as `…#my-record.field`, a world's import as `…/world@1.0.0#name`. The
    /// version is the new one, or the old one for a removed item.
    pub path: String,
    /// What changed.
    #[serde(flatten)]
    pub kind: ChangeKind,
    /// For code that calls (imports) the interface, or for hosts that run
    /// components of a world.
    pub callers: Verdict,
    /// For code that implements (exports) the interface, or for components
    /// that target a world.
    pub implementers: Verdict,
    /// The canonical ABI of an existing item changed: binaries compiled
    /// against the old WIT must be rebuilt to link against the new one,
    /// even where the values stay compatible.
    pub abi_breaking: bool,
    /// Why, in words.
    pub reason: String,
}

/// Every change between two versions of a package, interface or world.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Diff {
    /// What was compared, old side (`wasi:http@0.2.0`).
    pub old: String,
    /// New side.
    pub new: String,
    /// The changes, sorted by path.
    pub changes: Vec<Change>,
}

impl Diff {
    /// No change at all.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Some change can break existing callers.
    pub fn breaks_callers(&self) -> bool {
        self.changes.iter().any(|c| c.callers.is_breaking())
    }

    /// Some change can break existing implementations.
    pub fn breaks_implementers(&self) -> bool {
        self.changes.iter().any(|c| c.implementers.is_breaking())
    }

    /// The changes that break someone `policy` protects.
    pub fn breaking(&self, policy: Compatibility) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(move |c| policy.is_broken_by(c))
    }

    /// The changes at `path` (exact match).
    pub fn at<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a Change> {
        self.changes.iter().filter(move |c| c.path == path)
    }

    /// The human-readable report (same as `Display`).
    pub fn text(&self) -> String {
        self.to_string()
    }
}

fn word(v: Verdict) -> &'static str {
    match v {
        Verdict::Compatible => "ok",
        Verdict::Breaking => "BREAKING",
    }
}

fn summary(name: &str, changes: &[Change], pick: fn(&Change) -> Verdict) -> String {
    let n = changes.iter().filter(|c| pick(c).is_breaking()).count();
    match n {
        0 => format!("{name}: compatible"),
        n => format!(
            "{name}: BREAKING ({n} change{})",
            if n == 1 { "" } else { "s" }
        ),
    }
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} -> {}", self.old, self.new)?;
        if self.changes.is_empty() {
            return writeln!(f, "no changes");
        }
        let n = self.changes.len();
        writeln!(
            f,
            "{n} change{}; {}; {}",
            if n == 1 { "" } else { "s" },
            summary("callers", &self.changes, |c| c.callers),
            summary("implementers", &self.changes, |c| c.implementers),
        )?;
        for c in &self.changes {
            writeln!(
                f,
                "  [callers {}, implementers {}{}] {}: {}",
                word(c.callers),
                word(c.implementers),
                if c.abi_breaking { ", ABI" } else { "" },
                c.path,
                c.kind
            )?;
            writeln!(f, "      {}", c.reason)?;
        }
        Ok(())
    }
}
