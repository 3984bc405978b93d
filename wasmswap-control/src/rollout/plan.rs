//! Strategies as plans: each strategy becomes a list of phases — the
//! candidate's share on each node, how long it is held, and what is checked
//! before the next — fixed when traffic starts to move. The engine then
//! only walks phases, whatever the strategy.

use std::collections::BTreeMap;

use super::model::{Granularity, Phase, Strategy};

/// A target node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Node id.
    pub node_id: String,
    /// Its region.
    pub region: String,
}

/// An ISO-8601 duration (`PT5M`, `PT1H30M`, `P1D`, `PT0.5S`) in ms.
pub fn duration_ms(field: &str, text: &str) -> Result<u64, String> {
    let d = iso8601::duration(text).map_err(|_| {
        format!("{field} {text:?} is not an ISO-8601 duration (e.g. PT30S, PT5M, PT1H)")
    })?;
    let std: std::time::Duration = d.into();
    u64::try_from(std.as_millis()).map_err(|_| format!("{field} {text:?} is too long"))
}

fn all(targets: &[Target], weight: f64) -> BTreeMap<String, f64> {
    targets
        .iter()
        .map(|t| (t.node_id.clone(), weight))
        .collect()
}

fn phase(name: String, weights: BTreeMap<String, f64>, hold_ms: u64) -> Phase {
    Phase {
        name,
        weights,
        hold_ms,
        health_gate: true,
        metrics_gate: false,
        ab_gate: false,
        health_timeout_ms: 30_000,
        region: None,
    }
}

/// The phases of `strategy` over `targets`.
pub fn plan(strategy: &Strategy, targets: &[Target]) -> Result<Vec<Phase>, String> {
    if targets.is_empty() {
        return Err("no target node".into());
    }
    let mut phases = Vec::new();
    match strategy {
        Strategy::Canary {
            stages,
            evaluation_period,
            granularity,
            ..
        } => {
            let hold = duration_ms("evaluationPeriod", evaluation_period)?;
            if stages.is_empty() {
                return Err("stages must not be empty".into());
            }
            let mut last = 0.0;
            for s in stages {
                if !(*s > last && *s <= 100.0) {
                    return Err(format!(
                        "stages must increase within (0, 100]; {s} follows {last}"
                    ));
                }
                last = *s;
            }
            let mut stages = stages.clone();
            if last < 100.0 {
                stages.push(100.0);
            }
            for (i, share) in stages.iter().enumerate() {
                let full = *share >= 100.0;
                let weights = match granularity {
                    Granularity::Weight => all(targets, *share),
                    Granularity::Nodes => {
                        let n = ((share / 100.0) * targets.len() as f64).ceil() as usize;
                        targets
                            .iter()
                            .enumerate()
                            .map(|(j, t)| {
                                (t.node_id.clone(), if j < n.max(1) { 100.0 } else { 0.0 })
                            })
                            .collect()
                    }
                };
                let mut p = phase(
                    format!("stage {}: {share} %", i + 1),
                    weights,
                    if full { 0 } else { hold },
                );
                p.metrics_gate = !full;
                phases.push(p);
            }
        }
        Strategy::BlueGreen {
            health_check_timeout,
            ..
        } => {
            let timeout = duration_ms("healthCheckTimeout", health_check_timeout)?;
            let mut warm = phase("green warm beside blue".into(), all(targets, 0.0), 0);
            warm.health_timeout_ms = timeout;
            phases.push(warm);
            let mut switch = phase("switch to green".into(), all(targets, 100.0), 0);
            switch.health_timeout_ms = timeout;
            phases.push(switch);
        }
        Strategy::Rolling {
            batch_size,
            batch_delay,
            health_check_timeout,
            ..
        } => {
            let size = (*batch_size).max(1) as usize;
            let delay = match batch_delay {
                Some(d) => duration_ms("batchDelay", d)?,
                None => 0,
            };
            let timeout = duration_ms("healthCheckTimeout", health_check_timeout)?;
            let batches = targets.len().div_ceil(size);
            for b in 0..batches {
                let upto = ((b + 1) * size).min(targets.len());
                let weights = targets
                    .iter()
                    .enumerate()
                    .map(|(j, t)| (t.node_id.clone(), if j < upto { 100.0 } else { 0.0 }))
                    .collect();
                let mut p = phase(
                    format!("batch {} of {batches}", b + 1),
                    weights,
                    if b + 1 < batches { delay } else { 0 },
                );
                p.health_timeout_ms = timeout;
                phases.push(p);
            }
        }
        Strategy::Regional {
            region_order,
            inter_region_delay,
            ..
        } => {
            let delay = duration_ms("interRegionDelay", inter_region_delay)?;
            let mut present: Vec<String> = targets.iter().map(|t| t.region.clone()).collect();
            present.sort();
            present.dedup();
            let order: Vec<String> = if region_order.is_empty() {
                present.clone()
            } else {
                for r in region_order {
                    if !present.contains(r) {
                        return Err(format!("regionOrder names {r}, which has no target node"));
                    }
                }
                let missing: Vec<&String> = present
                    .iter()
                    .filter(|r| !region_order.contains(r))
                    .collect();
                if !missing.is_empty() {
                    return Err(format!("regionOrder leaves out target regions {missing:?}"));
                }
                region_order.clone()
            };
            for (i, region) in order.iter().enumerate() {
                let done = &order[..=i];
                let weights = targets
                    .iter()
                    .map(|t| {
                        let w = if done.contains(&t.region) { 100.0 } else { 0.0 };
                        (t.node_id.clone(), w)
                    })
                    .collect();
                let mut p = phase(
                    format!("region {region}"),
                    weights,
                    if i + 1 < order.len() { delay } else { 0 },
                );
                p.metrics_gate = i + 1 < order.len();
                p.region = Some(region.clone());
                phases.push(p);
            }
        }
        Strategy::Ab {
            variant_b_percentage,
            experiment_duration,
            ..
        } => {
            if !(*variant_b_percentage > 0.0 && *variant_b_percentage < 100.0) {
                return Err(format!(
                    "variantBPercentage must be between 0 and 100, not {variant_b_percentage}"
                ));
            }
            let hold = duration_ms("experimentDuration", experiment_duration)?;
            let mut experiment = phase(
                format!("experiment: B at {variant_b_percentage} %"),
                all(targets, *variant_b_percentage),
                hold,
            );
            experiment.ab_gate = true;
            phases.push(experiment);
            // The winner's phase is written when the experiment is decided.
        }
    }
    Ok(phases)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::model::Granularity;

    fn targets(regions: &[(&str, &str)]) -> Vec<Target> {
        regions
            .iter()
            .map(|(n, r)| Target {
                node_id: n.to_string(),
                region: r.to_string(),
            })
            .collect()
    }

    #[test]
    fn canary_stages_by_weight_and_by_nodes() {
        let t = targets(&[("a", "eu"), ("b", "eu"), ("c", "us"), ("d", "us")]);
        let s = Strategy::Canary {
            stages: vec![10.0, 50.0],
            evaluation_period: "PT2M".into(),
            success_threshold: 1,
            failure_threshold: 3,
            auto_promote: true,
            granularity: Granularity::Weight,
        };
        let p = plan(&s, &t).unwrap();
        assert_eq!(p.len(), 3, "100 % is appended");
        assert_eq!(p[0].weights["c"], 10.0);
        assert_eq!(p[0].hold_ms, 120_000);
        assert!(p[0].metrics_gate && !p[2].metrics_gate);
        assert_eq!(p[2].weights["a"], 100.0);
        let s = Strategy::Canary {
            stages: vec![25.0, 100.0],
            evaluation_period: "PT0S".into(),
            success_threshold: 1,
            failure_threshold: 3,
            auto_promote: true,
            granularity: Granularity::Nodes,
        };
        let p = plan(&s, &t).unwrap();
        let on: Vec<_> = p[0].weights.iter().filter(|(_, w)| **w == 100.0).collect();
        assert_eq!(on.len(), 1);
        let bad = Strategy::Canary {
            stages: vec![50.0, 20.0],
            evaluation_period: "PT0S".into(),
            success_threshold: 1,
            failure_threshold: 3,
            auto_promote: true,
            granularity: Granularity::Weight,
        };
        assert!(plan(&bad, &t).unwrap_err().contains("increase"));
    }

    #[test]
    fn rolling_regional_blue_green_ab() {
        let t = targets(&[
            ("a", "eu"),
            ("b", "eu"),
            ("c", "us"),
            ("d", "ap"),
            ("e", "ap"),
        ]);
        let p = plan(
            &Strategy::Rolling {
                batch_size: 2,
                batch_delay: Some("PT10S".into()),
                health_check_timeout: "PT5S".into(),
                pause_on_failure: true,
            },
            &t,
        )
        .unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].weights.values().filter(|w| **w == 100.0).count(), 2);
        assert_eq!(p[2].weights.values().filter(|w| **w == 100.0).count(), 5);
        assert_eq!(
            (p[0].hold_ms, p[2].hold_ms, p[0].health_timeout_ms),
            (10_000, 0, 5_000)
        );

        let p = plan(
            &Strategy::Regional {
                region_order: vec!["us".into(), "eu".into(), "ap".into()],
                inter_region_delay: "PT1S".into(),
                abort_on_region_failure: false,
            },
            &t,
        )
        .unwrap();
        assert_eq!(
            p.iter()
                .map(|p| p.region.clone().unwrap())
                .collect::<Vec<_>>(),
            ["us", "eu", "ap"]
        );
        assert_eq!(p[0].weights["c"], 100.0);
        assert_eq!(p[0].weights["a"], 0.0);
        assert_eq!(p[1].weights["a"], 100.0);
        let err = plan(
            &Strategy::Regional {
                region_order: vec!["us".into()],
                inter_region_delay: "PT1S".into(),
                abort_on_region_failure: true,
            },
            &t,
        )
        .unwrap_err();
        assert!(err.contains("leaves out"), "{err}");

        let p = plan(
            &Strategy::BlueGreen {
                health_check_timeout: "PT3S".into(),
                keep_blue_environment: true,
                blue_retention_period: "PT1H".into(),
            },
            &t,
        )
        .unwrap();
        assert_eq!(p.len(), 2);
        assert!(p[0].weights.values().all(|w| *w == 0.0));
        assert!(p[1].weights.values().all(|w| *w == 100.0));

        let p = plan(
            &Strategy::Ab {
                variant_b_percentage: 30.0,
                experiment_duration: "PT90S".into(),
                auto_promote: true,
            },
            &t,
        )
        .unwrap();
        assert_eq!(p.len(), 1);
        assert!(p[0].ab_gate);
        assert_eq!(p[0].hold_ms, 90_000);
    }

    #[test]
    fn durations() {
        assert_eq!(duration_ms("x", "PT1H30M").unwrap(), 5_400_000);
        assert_eq!(duration_ms("x", "PT0.5S").unwrap(), 500);
        assert!(
            duration_ms("x", "5 minutes")
                .unwrap_err()
                .contains("ISO-8601")
        );
    }
}
