//! [`Route`]: which version of a service answers a call — the stable one
//! alone, a weighted (and, given a key, sticky) split with a candidate, or the
//! stable one with the candidate mirrored on a copy of the call.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::version::Version;

/// A share of traffic in basis points: 0–10,000 (0.01 % resolution).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct Weight(u16);

impl Weight {
    /// No traffic.
    pub const ZERO: Weight = Weight(0);
    /// All traffic.
    pub const FULL: Weight = Weight(10_000);

    /// From basis points (1 = 0.01 %); errors above 10,000.
    pub fn from_basis_points(bp: u16) -> Result<Self> {
        if bp > 10_000 {
            return Err(Error::InvalidConfig(format!(
                "weight must be 0..=10000 basis points (0–100 %), got {bp}"
            )));
        }
        Ok(Self(bp))
    }

    /// From a percentage (0.0–100.0), rounded to the nearest 0.01 %.
    pub fn from_percent(percent: f64) -> Result<Self> {
        if !(0.0..=100.0).contains(&percent) {
            return Err(Error::InvalidConfig(format!(
                "weight must be 0–100 %, got {percent}"
            )));
        }
        Ok(Self((percent * 100.0).round() as u16))
    }

    /// Basis points.
    pub fn basis_points(self) -> u16 {
        self.0
    }

    /// Percent.
    pub fn percent(self) -> f64 {
        f64::from(self.0) / 100.0
    }
}

impl TryFrom<u16> for Weight {
    type Error = Error;
    fn try_from(bp: u16) -> Result<Self> {
        Self::from_basis_points(bp)
    }
}

impl From<Weight> for u16 {
    fn from(w: Weight) -> u16 {
        w.0
    }
}

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.percent())
    }
}

/// How the candidate takes part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "mode")]
pub enum CandidateMode {
    /// The candidate answers `weight` of the calls. Calls with a key always
    /// land on the same side for the same key (sticky); calls without one
    /// are spread evenly.
    Split,
    /// The stable version answers every call; `weight` of the calls are also
    /// run on the candidate, whose answer is compared and discarded.
    Mirror {
        /// Let the mirrored call keep writable preopens and outbound HTTP.
        /// Default `false`: a mirror must not act twice on the world.
        #[serde(default)]
        side_effects: bool,
    },
}

/// A candidate version beside the stable one.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The candidate version.
    pub version: Version,
    /// Its share of calls.
    pub weight: Weight,
    /// Split or mirror.
    pub mode: CandidateMode,
}

/// Which version answers a service's calls.
#[derive(Debug, Clone)]
pub struct Route {
    /// Answers every call not given to the candidate.
    pub stable: Version,
    /// An optional candidate.
    pub candidate: Option<Candidate>,
}

impl Route {
    /// Every call to `stable`.
    pub fn stable(stable: Version) -> Self {
        Self {
            stable,
            candidate: None,
        }
    }

    /// `weight` of the calls to `candidate` (sticky by key), the rest to `stable`.
    pub fn split(stable: Version, candidate: Version, weight: Weight) -> Self {
        Self {
            stable,
            candidate: Some(Candidate {
                version: candidate,
                weight,
                mode: CandidateMode::Split,
            }),
        }
    }

    /// Every call to `stable`; `weight` of them also mirrored to `candidate`
    /// without side-effecting capabilities.
    pub fn mirror(stable: Version, candidate: Version, weight: Weight) -> Self {
        Self {
            stable,
            candidate: Some(Candidate {
                version: candidate,
                weight,
                mode: CandidateMode::Mirror {
                    side_effects: false,
                },
            }),
        }
    }

    /// Checks the route: the candidate must be another version, and the two
    /// must be of the same kind (module or component) so a call means the same
    /// thing on both.
    pub fn validate(&self) -> Result<()> {
        if let Some(c) = &self.candidate {
            if c.version.same_as(&self.stable) {
                return Err(Error::InvalidConfig(format!(
                    "candidate `{}` is the stable version itself",
                    c.version.label()
                )));
            }
            if c.version.is_component() != self.stable.is_component() {
                return Err(Error::InvalidConfig(format!(
                    "candidate `{}` and stable `{}` must both be components or both core modules",
                    c.version.label(),
                    self.stable.label()
                )));
            }
        }
        Ok(())
    }

    /// Every version this route references.
    pub fn versions(&self) -> impl Iterator<Item = &Version> {
        std::iter::once(&self.stable).chain(self.candidate.as_ref().map(|c| &c.version))
    }

    /// A serializable description (labels, not handles).
    pub fn summary(&self) -> RouteSummary {
        RouteSummary {
            stable: self.stable.label().to_string(),
            candidate: self
                .candidate
                .as_ref()
                .map(|c| c.version.label().to_string()),
            weight: self.candidate.as_ref().map(|c| c.weight),
            mode: self.candidate.as_ref().map(|c| c.mode),
        }
    }
}

/// A route by version labels, for events, status pages and logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteSummary {
    /// Label of the stable version.
    pub stable: String,
    /// Label of the candidate, if any.
    pub candidate: Option<String>,
    /// The candidate's weight in basis points.
    pub weight: Option<Weight>,
    /// Split or mirror.
    pub mode: Option<CandidateMode>,
}

impl fmt::Display for RouteSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.candidate, self.weight, self.mode) {
            (Some(c), Some(w), Some(CandidateMode::Mirror { .. })) => {
                write!(f, "{} (mirroring {w} to {c})", self.stable)
            }
            (Some(c), Some(w), _) => write!(f, "{} / {c} at {w}", self.stable),
            _ => write!(f, "{}", self.stable),
        }
    }
}

/// The bucket (0–9,999) a sticky key falls in for a service: a fixed-seed
/// xxh3 hash, the same in every process and on every node, so a key keeps
/// its side of a split everywhere and as the candidate's weight grows
/// (a key in the candidate at 10 % stays in it at 25 %).
pub fn sticky_bucket(service: &str, key: &str) -> u16 {
    let salt = xxhash_rust::xxh3::xxh3_64(service.as_bytes());
    (xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), salt) % 10_000) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_range_checked() {
        assert_eq!(Weight::from_percent(10.0).unwrap().basis_points(), 1000);
        assert_eq!(Weight::from_percent(0.1).unwrap().basis_points(), 10);
        assert_eq!(Weight::from_percent(12.34).unwrap().basis_points(), 1234);
        assert!(Weight::from_percent(100.01).is_err());
        assert!(Weight::from_percent(-1.0).is_err());
        assert!(Weight::from_percent(f64::NAN).is_err());
        assert!(Weight::from_basis_points(10_001).is_err());
        let w: Result<Weight, _> = serde_json::from_str("20000");
        assert!(w.is_err());
        assert_eq!(serde_json::to_string(&Weight::FULL).unwrap(), "10000");
    }

    #[test]
    fn sticky_buckets_are_pinned() {
        // Pinned values: a change here means keys move between versions on a
        // mixed fleet, which must never happen silently.
        assert_eq!(
            sticky_bucket("checkout", "user-1"),
            sticky_bucket("checkout", "user-1")
        );
        assert_ne!(
            sticky_bucket("checkout", "user-1"),
            sticky_bucket("search", "user-1")
        );
        let pinned: Vec<u16> = ["", "a", "user-42", "session=9f8e"]
            .iter()
            .map(|k| sticky_bucket("svc", k))
            .collect();
        assert_eq!(pinned, PINNED);
    }

    const PINNED: [u16; 4] = [2176, 1457, 409, 3846];
}
