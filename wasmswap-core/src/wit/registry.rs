//! An in-memory registry of interface versions: each new version is
//! reviewed against the one before it (diff + semver gate), and one whose
//! changes break the people its policy protects waits for approval.
//!
//! The control plane persists what it registers and rebuilds a registry
//! from the stored WIT on start; this type holds the rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::package::{WitInterface, WitPackage};
use super::report::{Compatibility, Diff};
use super::semver_gate::{SemverCheck, check_semver};
use super::{WitError, diff_interfaces};

/// Where a registered version stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Registered, not yet approved.
    Draft,
    /// Approved for use.
    Approved,
    /// Still usable, but callers should move on.
    Deprecated,
}

/// One registered interface version.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `namespace:package/interface@version`.
    pub id: String,
    /// The version.
    pub version: semver::Version,
    /// The interface itself.
    pub interface: WitInterface,
    /// Whose code its changes are judged by.
    pub compatibility: Compatibility,
    /// Draft, approved or deprecated.
    pub status: Status,
    /// The review it got when registered.
    pub review: Review,
}

impl Entry {
    /// Whether components may be deployed against it: approved, deprecated
    /// (still served), or a draft whose changes break nobody.
    pub fn is_cleared(&self) -> bool {
        match self.status {
            Status::Approved | Status::Deprecated => true,
            Status::Draft => !self.review.needs_approval,
        }
    }
}

/// What registering a version would do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Review {
    /// The new version's id.
    pub id: String,
    /// The version it was compared with: the highest registered one below it.
    pub previous: Option<String>,
    /// The changes since `previous`.
    pub diff: Option<Diff>,
    /// Whether the version bump permits them.
    pub semver: Option<SemverCheck>,
    /// When the version lands between two registered ones (a backport),
    /// the version just above it…
    pub next: Option<String>,
    /// …and whether the bump from the new version up to that one still
    /// permits what changes between them.
    pub next_semver: Option<SemverCheck>,
    /// Some change breaks the people the compatibility policy protects.
    pub breaking: bool,
    /// It must be approved before use (breaking changes need a person).
    pub needs_approval: bool,
}

/// Why a version cannot be registered, or an id is unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The WIT is bad or lacks the named interface.
    #[error(transparent)]
    Wit(#[from] WitError),
    /// Interfaces in a registry need a versioned package.
    #[error("{0} has no version: registered interfaces need `package ns:name@x.y.z;`")]
    Unversioned(String),
    /// This exact version is already registered.
    #[error("{0} is already registered")]
    Duplicate(String),
    /// The version number does not permit the changes it carries.
    #[error("{id}: {reason}")]
    SemverRefused {
        /// The refused version.
        id: String,
        /// What the gate said.
        reason: String,
        /// The review behind it.
        review: Box<Review>,
    },
    /// No such version.
    #[error("no interface version {0}")]
    NotFound(String),
}

/// Registered interface versions, by `namespace:package/interface`.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    interfaces: BTreeMap<String, BTreeMap<semver::Version, Entry>>,
}

fn split(id: &str) -> Option<(&str, semver::Version)> {
    let (key, v) = id.rsplit_once('@')?;
    Some((key, v.parse().ok()?))
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reviews interface `name` of `package` against the registered
    /// versions, without registering it.
    pub fn review(
        &self,
        package: &WitPackage,
        name: &str,
        compatibility: Compatibility,
    ) -> Result<Review, RegistryError> {
        let iface = package.interface(name)?;
        let id = iface.name();
        let version = iface
            .version()
            .cloned()
            .ok_or_else(|| RegistryError::Unversioned(id.clone()))?;
        let key = id
            .rsplit_once('@')
            .map_or(id.as_str(), |(k, _)| k)
            .to_string();
        if self
            .interfaces
            .get(&key)
            .is_some_and(|v| v.contains_key(&version))
        {
            return Err(RegistryError::Duplicate(id));
        }
        let versions = self.interfaces.get(&key);
        let previous = versions
            .and_then(|v| v.range(..version.clone()).next_back())
            .map(|(_, e)| e);
        let next = versions
            .and_then(|v| v.range(version.clone()..).next())
            .map(|(_, e)| e);
        let mut review = Review {
            id,
            previous: None,
            diff: None,
            semver: None,
            next: None,
            next_semver: None,
            breaking: false,
            needs_approval: false,
        };
        if let Some(prev) = previous {
            let diff = diff_interfaces(&prev.interface, &iface);
            review.semver = Some(check_semver(&prev.version, &version, &diff, compatibility));
            review.breaking = diff.breaking(compatibility).next().is_some();
            review.needs_approval = review.breaking;
            review.previous = Some(prev.id.clone());
            review.diff = Some(diff);
        }
        if let Some(next) = next {
            let diff = diff_interfaces(&iface, &next.interface);
            review.next_semver = Some(check_semver(&version, &next.version, &diff, compatibility));
            review.next = Some(next.id.clone());
        }
        Ok(review)
    }

    /// Registers interface `name` of `package` as a draft. Refused when the
    /// version number does not permit its changes.
    pub fn register(
        &mut self,
        package: &WitPackage,
        name: &str,
        compatibility: Compatibility,
    ) -> Result<&Entry, RegistryError> {
        let review = self.review(package, name, compatibility)?;
        let refused = [&review.semver, &review.next_semver]
            .into_iter()
            .flatten()
            .find(|g| !g.allowed)
            .cloned();
        if let Some(gate) = refused {
            return Err(RegistryError::SemverRefused {
                id: review.id.clone(),
                reason: gate.reason.clone(),
                review: Box::new(review),
            });
        }
        let interface = package.interface(name)?;
        let (key, version) = split(&review.id)
            .map(|(k, v)| (k.to_string(), v))
            .ok_or_else(|| RegistryError::Unversioned(review.id.clone()))?;
        let entry = Entry {
            id: review.id.clone(),
            version: version.clone(),
            interface,
            compatibility,
            status: Status::Draft,
            review,
        };
        tracing::info!(id = %entry.id, status = ?entry.status, "interface registered");
        let versions = self.interfaces.entry(key).or_default();
        Ok(versions.entry(version).or_insert(entry))
    }

    /// Puts back a version registered earlier, as it was (the control plane
    /// rebuilds a registry from its store): no review and no gates run.
    pub fn restore(
        &mut self,
        package: &WitPackage,
        name: &str,
        compatibility: Compatibility,
        status: Status,
        review: Review,
    ) -> Result<&Entry, RegistryError> {
        let interface = package.interface(name)?;
        let id = interface.name();
        let (key, version) = split(&id)
            .map(|(k, v)| (k.to_string(), v))
            .ok_or_else(|| RegistryError::Unversioned(id.clone()))?;
        let entry = Entry {
            id,
            version: version.clone(),
            interface,
            compatibility,
            status,
            review,
        };
        let versions = self.interfaces.entry(key).or_default();
        versions.insert(version.clone(), entry);
        Ok(&versions[&version])
    }

    fn entry_mut(&mut self, id: &str) -> Result<&mut Entry, RegistryError> {
        let (key, version) = split(id).ok_or_else(|| RegistryError::NotFound(id.into()))?;
        self.interfaces
            .get_mut(key)
            .and_then(|v| v.get_mut(&version))
            .ok_or_else(|| RegistryError::NotFound(id.into()))
    }

    /// Approves a version (a person accepted its breaking changes).
    pub fn approve(&mut self, id: &str) -> Result<&Entry, RegistryError> {
        let e = self.entry_mut(id)?;
        e.status = Status::Approved;
        tracing::info!(id, "interface approved");
        Ok(e)
    }

    /// Marks a version deprecated.
    pub fn deprecate(&mut self, id: &str) -> Result<&Entry, RegistryError> {
        let e = self.entry_mut(id)?;
        e.status = Status::Deprecated;
        tracing::info!(id, "interface deprecated");
        Ok(e)
    }

    /// One version by id (`ns:pkg/iface@1.2.3`).
    pub fn get(&self, id: &str) -> Option<&Entry> {
        let (key, version) = split(id)?;
        self.interfaces.get(key)?.get(&version)
    }

    /// The highest version of an interface (`ns:pkg/iface`).
    pub fn latest(&self, key: &str) -> Option<&Entry> {
        self.interfaces.get(key)?.values().next_back()
    }

    /// Every version, ordered by interface then version.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.interfaces.values().flat_map(|v| v.values())
    }
}
