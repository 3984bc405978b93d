//! WIT: parse interfaces, decode a component's world, and say what changed
//! between two versions and whom it breaks.
//!
//! ```
//! use wasmswap_core::wit::{self, Verdict, WitPackage};
//!
//! let v1 = WitPackage::parse("v1.wit", r#"
//!     package acme:shop@1.0.0;
//!     interface orders {
//!         record order { id: u64, qty: u32 }
//!         place: func(o: order) -> result<u64, string>;
//!     }
//! "#)?;
//! let v2 = WitPackage::parse("v2.wit", r#"
//!     package acme:shop@1.1.0;
//!     interface orders {
//!         record order { id: u64, qty: u32, note: option<string> }
//!         place: func(o: order) -> result<u64, string>;
//!         cancel: func(id: u64);
//!     }
//! "#)?;
//! let diff = wit::diff_packages(&v1, &v2);
//! let note = diff.at("acme:shop/orders@1.1.0#order.note").next().unwrap();
//! assert_eq!(note.callers, Verdict::Compatible); // old callers just leave it out
//! assert!(!diff.breaks_callers());
//! assert!(diff.breaks_implementers()); // old implementations lack `cancel`
//! let gate = wit::check_semver(
//!     v1.version().unwrap(), v2.version().unwrap(), &diff, Default::default());
//! assert!(gate.allowed, "{}", gate.reason);
//! # Ok::<(), wasmswap_core::wit::WitError>(())
//! ```
//!
//! # The compatibility model
//!
//! Every change gets two verdicts. **Callers** are code that imports an
//! interface and calls its functions (for a world: the hosts that run its
//! components, and their clients). **Implementers** are code that exports
//! it (for a world: the components). A change is *breaking* for callers if
//! a caller written against the old version can fail against an
//! implementation of the new one, and for implementers if an old
//! implementation can fail when called by new callers.
//!
//! Verdicts follow the values that cross the boundary (see `compat`):
//! records and arguments match by name, a missing `option` reads as none,
//! unknown fields in arguments are refused (wasmswap's JSON conversion does,
//! to catch typos) while unknown fields in results are ignored (as REST
//! clients do), integers may widen, and a type's change is judged by every
//! place it is used (argument, result, or both). A function added breaks
//! implementers; one removed breaks callers. Items gated `@unstable` carry
//! no promise, so their changes are compatible. Separately, each change says
//! whether it alters the canonical ABI (`abi_breaking`): a component that
//! was *compiled* against the old WIT and is linked, not called through
//! JSON, must be rebuilt even for value-compatible changes such as a
//! reordered record or a widened integer.

mod compat;
mod conformance;
mod diff;
mod package;
mod registry;
mod report;
mod semver_gate;
mod types;

pub use conformance::{Conformance, HostInterfaces, check_exports, check_imports, wasi_0_2_12};
pub use package::{Location, WitError, WitInterface, WitPackage, WitWorld};
pub use registry::{Entry, Registry, RegistryError, Review, Status};
pub use report::{Change, ChangeKind, Compatibility, Diff, Verdict};
pub use semver_gate::{Bump, SemverCheck, check_semver};

use diff::{Differ, Role, interfaces_by_name};

/// Every change between two versions of a package: its interfaces (with
/// their functions and types, and the types they reach in dependencies)
/// and its worlds' imports and exports. Interfaces of other packages that a
/// world imports are compared by [`diff_worlds`], not here.
pub fn diff_packages(old: &WitPackage, new: &WitPackage) -> Diff {
    let (or, nr) = (&*old.resolve, &*new.resolve);
    let mut d = Differ::new(or, nr);
    let (oi, ni) = (
        interfaces_by_name(or, old.package),
        interfaces_by_name(nr, new.package),
    );
    for (name, &a) in &oi {
        match ni.get(name) {
            Some(&b) => d.interface(a, b, Role::Direct, None),
            None => d.removed_interface(a),
        }
    }
    for (name, &b) in &ni {
        if !oi.contains_key(name) {
            d.added_interface(b);
        }
    }
    let (ow, nw) = (
        &or.packages[old.package].worlds,
        &nr.packages[new.package].worlds,
    );
    for (name, &a) in ow {
        match nw.get(name) {
            Some(&b) => d.world(a, b, false),
            None => d.removed_world(a),
        }
    }
    for (name, &b) in nw {
        if !ow.contains_key(name) {
            d.added_world(b);
        }
    }
    d.finish(old.name(), new.name())
}

/// Every change between two versions of one interface.
pub fn diff_interfaces(old: &WitInterface, new: &WitInterface) -> Diff {
    let mut d = Differ::new(&old.resolve, &new.resolve);
    d.interface(old.interface, new.interface, Role::Direct, None);
    d.finish(old.name(), new.name())
}

/// Every change between two versions of a world, including inside every
/// interface it imports or exports (whatever package defines it). Use it
/// for two builds of one component: `WitWorld::from_component` each.
pub fn diff_worlds(old: &WitWorld, new: &WitWorld) -> Diff {
    let mut d = Differ::new(&old.resolve, &new.resolve);
    d.world(old.world, new.world, true);
    d.finish(old.name(), new.name())
}
