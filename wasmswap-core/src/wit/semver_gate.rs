//! Does a version bump permit the changes a diff found?
//!
//! The rule is Cargo's reading of semver, which WASI follows too: at 1.0
//! and above, a breaking change needs a major bump and an addition a minor
//! one; below 1.0 the minor number acts as the major (0.2 → 0.3 may break,
//! 0.2.0 → 0.2.1 may add); at 0.0.x every release may break. A
//! pre-release promises nothing, so any increase is allowed into one.

use semver::Version;
use serde::{Deserialize, Serialize};

use super::report::{Compatibility, Diff};

/// How far apart two versions are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bump {
    /// The same version.
    Same,
    /// Only the patch number (or the pre-release/build part) increased.
    Patch,
    /// The minor number increased.
    Minor,
    /// The major number increased.
    Major,
}

/// The verdict of [`check_semver`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SemverCheck {
    /// The old version.
    pub old: String,
    /// The new version.
    pub new: String,
    /// The bump between them (`None` also for a downgrade; see `allowed`).
    pub bump: Bump,
    /// The smallest bump the changes need.
    pub required: Bump,
    /// Whether `bump` permits the changes.
    pub allowed: bool,
    /// Why, in words.
    pub reason: String,
}

impl std::fmt::Display for Bump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Bump::Same => "no",
            Bump::Patch => "patch",
            Bump::Minor => "minor",
            Bump::Major => "major",
        })
    }
}

fn bump(old: &Version, new: &Version) -> Bump {
    if new.major != old.major {
        Bump::Major
    } else if new.minor != old.minor {
        Bump::Minor
    } else if new > old {
        Bump::Patch
    } else {
        Bump::Same
    }
}

/// What the changes need, on `old`'s release line: a breaking change needs
/// a new major (the minor below 1.0; any bump at 0.0.x), an addition a new
/// minor (a patch below 1.0), and no change at all nothing.
fn required(old: &Version, breaking: bool, changed: bool) -> Bump {
    match (breaking, changed, old.major, old.minor) {
        (_, false, ..) => Bump::Same,
        (true, _, 0, 0) => Bump::Patch,
        (true, _, 0, _) => Bump::Minor,
        (true, ..) => Bump::Major,
        (false, _, 0, _) => Bump::Patch,
        (false, ..) => Bump::Minor,
    }
}

/// Says whether going from `old` to `new` permits the changes in `diff`,
/// where `policy` says whose code a breaking change is judged by.
pub fn check_semver(
    old: &Version,
    new: &Version,
    diff: &Diff,
    policy: Compatibility,
) -> SemverCheck {
    let breaking = diff.breaking(policy).count();
    let changed = !diff.is_empty();
    let actual = bump(old, new);
    let need = required(old, breaking > 0, changed);
    let (allowed, reason) = if new < old {
        (false, format!("{new} is lower than {old}"))
    } else if new == old && changed {
        (
            false,
            format!(
                "the interface changed ({} change(s)) but the version stayed {old}",
                diff.changes.len()
            ),
        )
    } else if !new.pre.is_empty() && new > old {
        (
            true,
            format!("{new} is a pre-release, which promises no compatibility"),
        )
    } else if !old.pre.is_empty() && new > old {
        (
            true,
            format!("{old} was a pre-release, which promised no compatibility"),
        )
    } else if actual >= need {
        let what = match (breaking, changed) {
            (0, false) => "no change".to_string(),
            (0, true) => "only compatible changes".to_string(),
            (n, _) => format!("{n} breaking change(s)"),
        };
        (true, format!("{what}, and a {actual} bump allows that"))
    } else {
        let first = diff
            .breaking(policy)
            .next()
            .map(|c| format!(", e.g. {} ({})", c.path, c.kind))
            .unwrap_or_default();
        let what = if breaking > 0 {
            format!("{breaking} breaking change(s){first}")
        } else {
            format!("{} compatible addition(s)", diff.changes.len())
        };
        (
            false,
            format!("{what} need at least a {need} bump from {old}, but {new} is a {actual} bump"),
        )
    };
    SemverCheck {
        old: old.to_string(),
        new: new.to_string(),
        bump: actual,
        required: need,
        allowed,
        reason,
    }
}
