//! The `wit_diff` example's logic: compare two WIT packages, worlds or
//! components and render the report (text or JSON) with the semver gate.

use anyhow::{Context, bail};
use wasmswap_core::wit::{self, Compatibility, Diff, WitPackage, WitWorld};

enum Input {
    Package(WitPackage),
    Component(WitWorld),
}

fn read(path: &str) -> anyhow::Result<Input> {
    if path.ends_with(".wasm") {
        let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
        return Ok(Input::Component(WitWorld::from_component(&bytes)?));
    }
    WitPackage::from_path(path)
        .map(Input::Package)
        .map_err(|e| anyhow::anyhow!("{}", e.rendered))
}

/// Runs the comparison the arguments describe (`OLD NEW [--world NAME]
/// [--policy P] [--json]`). Returns the report and whether the change
/// passes: nothing breaks under the policy and the version bump, when both
/// sides have versions, permits the changes.
pub fn run<I: IntoIterator<Item = String>>(args: I) -> anyhow::Result<(String, bool)> {
    let mut paths = Vec::new();
    let (mut world, mut json, mut policy) = (None, false, Compatibility::Callers);
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json = true,
            "--world" => world = Some(args.next().context("--world needs a name")?),
            "--policy" => {
                let p = args.next().context("--policy needs a value")?;
                policy = serde_json::from_value(serde_json::Value::String(p.clone()))
                    .with_context(|| {
                        format!("unknown policy {p:?} (callers, implementers, both, none)")
                    })?;
            }
            _ if a.starts_with("--") => bail!("unknown option {a}"),
            _ => paths.push(a),
        }
    }
    let [old, new] = paths.as_slice() else {
        bail!("usage: wit_diff OLD NEW [--world NAME] [--policy P] [--json]");
    };
    let (diff, versions): (Diff, _) = match (read(old)?, read(new)?) {
        (Input::Component(a), Input::Component(b)) => (wit::diff_worlds(&a, &b), None),
        (Input::Package(a), Input::Package(b)) => {
            let versions = a.version().cloned().zip(b.version().cloned());
            match &world {
                Some(w) => (wit::diff_worlds(&a.world(w)?, &b.world(w)?), versions),
                None => (wit::diff_packages(&a, &b), versions),
            }
        }
        _ => bail!("compare two components or two WIT packages, not one of each"),
    };
    let gate = versions.map(|(a, b)| wit::check_semver(&a, &b, &diff, policy));
    let out = if json {
        let value = serde_json::json!({ "diff": diff, "semver": gate });
        serde_json::to_string_pretty(&value)? + "\n"
    } else {
        let mut s = diff.to_string();
        if let Some(g) = &gate {
            let verdict = if g.allowed { "ok" } else { "REFUSED" };
            s += &format!("semver {} -> {}: {verdict} ({})\n", g.old, g.new, g.reason);
        }
        s
    };
    let pass = diff.breaking(policy).next().is_none() && gate.is_none_or(|g| g.allowed);
    Ok((out, pass))
}
