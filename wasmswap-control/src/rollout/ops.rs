//! The operations the API offers on deployments. They only change status
//! and flags in the store (with the revision they read) and wake the
//! engine, which makes every node call.

use crate::model::Actor;
use crate::store::{Store, StoreError};

use super::model::{Deployment, DeploymentSpec, DeploymentStatus, EngineState};
use super::plan;

/// Why an operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The request is wrong (field named).
    #[error("{message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The deployment's state does not allow it.
    #[error("{0}")]
    State(String),
    /// The store failed (or not found).
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &'static str, message: impl Into<String>) -> OpError {
    OpError::Invalid {
        field,
        message: message.into(),
    }
}

/// Checks a request and stores it as a pending deployment.
pub async fn create(
    store: &Store,
    mut spec: DeploymentSpec,
    actor: &Actor,
) -> Result<Deployment, OpError> {
    let strategy = spec.parse_strategy().map_err(|e| {
        invalid(
            "strategyConfig",
            format!("strategy {:?}: {e}", spec.strategy),
        )
    })?;
    // The durations and shapes the plan needs, checked now rather than
    // when traffic is about to move.
    let probe = [plan::Target {
        node_id: "probe".into(),
        region: "probe".into(),
    }];
    if !matches!(strategy, super::model::Strategy::Regional { ref region_order, .. } if !region_order.is_empty())
    {
        plan::plan(&strategy, &probe).map_err(|e| invalid("strategyConfig", e))?;
    }
    if let super::model::Replicas::Count(n) = spec.replicas
        && !(1..=3).contains(&n)
    {
        return Err(invalid(
            "replicas",
            format!("replicas is {n}; allowed 1–3 or \"all\""),
        ));
    }
    let a = &spec.analysis;
    if !(0.0..=1.0).contains(&a.max_error_rate) || !(0.0..=1.0).contains(&a.max_crash_rate) {
        return Err(invalid(
            "analysis",
            "error and crash rates are fractions between 0 and 1",
        ));
    }
    if !(a.significance > 0.0 && a.significance < 0.5) {
        return Err(invalid(
            "analysis",
            "significance must be between 0 and 0.5",
        ));
    }
    // One spelling per environment, so "Production" or "prod " cannot
    // side-step the production approval.
    spec.environment = spec.environment.trim().to_ascii_lowercase();
    if spec.environment == "prod" {
        spec.environment = "production".into();
    }
    if spec.environment.is_empty()
        || spec.environment.len() > 32
        || !spec
            .environment
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(invalid(
            "environment",
            "environment must be 1–32 characters of a-z, 0-9, '-'",
        ));
    }
    let module = store
        .get_module(&spec.module_id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => invalid(
                "moduleId",
                format!("module {} is not registered", spec.module_id),
            ),
            other => other.into(),
        })?;
    if let Some(other) = store.active_deployment_of(&module.name).await? {
        return Err(OpError::State(format!(
            "deployment {other} of {} is still underway; finish, abort or roll it back first",
            module.name
        )));
    }
    let stable = store.live_module(&module.name).await?;
    if stable.as_deref() == Some(module.module_id.as_str()) {
        return Err(OpError::State(format!(
            "{} is already the live version",
            module.module_id
        )));
    }
    let id = format!("dep-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    Ok(store
        .create_deployment(
            &id,
            &module.name,
            stable.as_deref(),
            &spec,
            DeploymentStatus::Pending,
            &EngineState::default(),
            actor,
        )
        .await?)
}

/// Reads, changes and saves a deployment, retrying when the engine wrote
/// in between.
async fn update<F>(
    store: &Store,
    id: &str,
    actor: &Actor,
    action: &str,
    mut change: F,
) -> Result<Deployment, OpError>
where
    F: FnMut(&mut Deployment) -> Result<(&'static str, String), OpError>,
{
    // Wait for an engine step in progress: it may be changing node routes,
    // and this change must come after it, not be lost under it.
    let _lock = store.lock(&format!("deployment:{id}")).await?;
    for _ in 0..20 {
        let mut d = store.get_deployment(id).await?;
        let (kind, message) = change(&mut d)?;
        match store
            .save_deployment(
                &d,
                Some((kind, &message, serde_json::json!({ "by": actor.name }))),
                Some((actor, action)),
            )
            .await
        {
            Ok(d) => return Ok(d),
            Err(StoreError::Conflict(_)) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(OpError::State(format!(
        "deployment {id} keeps changing; retry"
    )))
}

/// Starts a pending deployment. Production needs an admin: `is_admin`
/// starts it (approving it); anyone else sends it to awaiting approval.
pub async fn execute(
    store: &Store,
    id: &str,
    actor: &Actor,
    is_admin: bool,
) -> Result<Deployment, OpError> {
    update(store, id, actor, "deployment.execute", |d| {
        if d.status != DeploymentStatus::Pending {
            return Err(OpError::State(format!(
                "deployment {id} is {}; only a pending one can be executed",
                d.status.as_str()
            )));
        }
        if d.environment == "production" && !is_admin {
            d.status = DeploymentStatus::AwaitingApproval;
            return Ok((
                "awaiting-approval",
                "production: an admin must approve".into(),
            ));
        }
        if d.environment == "production" {
            d.approved_by = Some(actor.name.clone());
        }
        d.status = DeploymentStatus::InProgress;
        Ok(("executed", format!("started by {}", actor.name)))
    })
    .await
}

/// An admin approves a production deployment, which starts it.
pub async fn approve(store: &Store, id: &str, actor: &Actor) -> Result<Deployment, OpError> {
    update(store, id, actor, "deployment.approve", |d| {
        if !matches!(
            d.status,
            DeploymentStatus::AwaitingApproval | DeploymentStatus::Pending
        ) {
            return Err(OpError::State(format!(
                "deployment {id} is {}; nothing to approve",
                d.status.as_str()
            )));
        }
        d.approved_by = Some(actor.name.clone());
        d.status = DeploymentStatus::InProgress;
        Ok(("approved", format!("approved by {}", actor.name)))
    })
    .await
}

/// Holds the deployment where it is.
pub async fn pause(store: &Store, id: &str, actor: &Actor) -> Result<Deployment, OpError> {
    update(store, id, actor, "deployment.pause", |d| {
        if d.status != DeploymentStatus::InProgress || d.state.rolling_back {
            return Err(OpError::State(format!(
                "deployment {id} is {}; only one in progress can be paused",
                d.status.as_str()
            )));
        }
        d.status = DeploymentStatus::Paused;
        Ok(("paused", format!("paused by {}", actor.name)))
    })
    .await
}

/// Carries on after a pause.
pub async fn resume(store: &Store, id: &str, actor: &Actor) -> Result<Deployment, OpError> {
    update(store, id, actor, "deployment.resume", |d| {
        if d.status != DeploymentStatus::Paused {
            return Err(OpError::State(format!(
                "deployment {id} is {}; only a paused one can be resumed",
                d.status.as_str()
            )));
        }
        d.status = DeploymentStatus::InProgress;
        // A failed gate is judged afresh.
        d.state.failures = 0;
        Ok(("resumed", format!("resumed by {}", actor.name)))
    })
    .await
}

/// Skips to the next phase (without its gates), or with `full` to the
/// last one (everything on the new version).
pub async fn promote(
    store: &Store,
    id: &str,
    actor: &Actor,
    full: bool,
) -> Result<Deployment, OpError> {
    update(store, id, actor, "deployment.promote", |d| {
        if !matches!(
            d.status,
            DeploymentStatus::InProgress | DeploymentStatus::Paused
        ) || d.state.rolling_back
        {
            return Err(OpError::State(format!(
                "deployment {id} is {}; nothing to promote",
                d.status.as_str()
            )));
        }
        if d.state.plan.is_empty() {
            return Err(OpError::State(format!(
                "deployment {id} has not started moving traffic yet"
            )));
        }
        let undecided_ab = d.state.plan.get(d.state.phase).is_some_and(|p| p.ab_gate)
            && d.state.winner.is_none();
        if full {
            if let Some(last) = d.state.plan.last().cloned()
                && (last.ab_gate || last.weights.values().any(|w| *w < 100.0))
            {
                // A/B before a decision, or a plan not ending at 100 %.
                let weights = last.weights.keys().map(|k| (k.clone(), 100.0)).collect();
                d.state.plan.push(super::model::Phase {
                    name: "promoted to 100 %".into(),
                    weights,
                    hold_ms: 0,
                    health_gate: true,
                    metrics_gate: false,
                    ab_gate: false,
                    health_timeout_ms: last.health_timeout_ms,
                    region: None,
                });
                d.state.winner = Some("B".into());
            }
            d.state.phase = d.state.plan.len() - 1;
        } else if undecided_ab {
            return Err(OpError::State(format!(
                "deployment {id}'s experiment is not decided yet; promote with {{\"full\": true}} to pick B now"
            )));
        } else if d.state.phase + 1 >= d.state.plan.len() {
            return Err(OpError::State(format!(
                "deployment {id} is at its last phase; it completes when that phase passes"
            )));
        } else {
            // A decided A/B, a stage that passed, or a skip: the next phase.
            d.state.phase += 1;
        }
        d.state.applied = false;
        d.state.awaiting_promotion = false;
        d.status = DeploymentStatus::InProgress;
        Ok((
            "promoted",
            if full {
                "promoted to 100 %".into()
            } else {
                "promoted to the next phase".into()
            },
        ))
    })
    .await
}

/// Rolls every touched node back to the previous version (`abort` is the
/// same, recorded as an abort).
pub async fn rollback(
    store: &Store,
    id: &str,
    actor: &Actor,
    abort: bool,
) -> Result<Deployment, OpError> {
    let action = if abort {
        "deployment.abort"
    } else {
        "deployment.rollback"
    };
    // A completed deployment may be rolled back only while it is the
    // service's latest and nothing else is underway.
    let service = store.get_deployment(id).await?.service;
    let mut live = Vec::new();
    if store.active_deployment_of(&service).await?.is_none()
        && let Some(latest) = store
            .list_deployments(Some(&service), Some(DeploymentStatus::Completed), 1)
            .await?
            .first()
    {
        live.push(latest.deployment_id.clone());
    }
    update(store, id, actor, action, |d| {
        match d.status {
            DeploymentStatus::Pending | DeploymentStatus::AwaitingApproval => {
                // Nothing moved yet: just stop it.
                d.status = DeploymentStatus::RolledBack;
                return Ok(("aborted", format!("aborted by {} before it started", actor.name)));
            }
            DeploymentStatus::InProgress | DeploymentStatus::Paused => {}
            DeploymentStatus::Completed if abort => {
                return Err(OpError::State(format!(
                    "deployment {id} is completed; roll it back instead (operators and admins)"
                )));
            }
            DeploymentStatus::Completed => {
                if !live.contains(&d.deployment_id) {
                    return Err(OpError::State(format!(
                        "deployment {id} is not the service's latest; roll back the latest one"
                    )));
                }
            }
            other => {
                return Err(OpError::State(format!("deployment {id} is {}; nothing to roll back", other.as_str())));
            }
        }
        if d.stable_module_id.is_none() {
            if abort {
                // Nothing to go back to: it stops here; the nodes keep
                // what they serve.
                d.status = DeploymentStatus::Failed;
                return Ok((
                    "aborted",
                    format!("first deployment aborted by {}; routes left as they are", actor.name),
                ));
            }
            return Err(OpError::State(format!(
                "deployment {id} was the service's first: there is no previous version to go back to"
            )));
        }
        d.status = DeploymentStatus::InProgress;
        d.state.rolling_back = true;
        d.state.awaiting_promotion = false;
        d.state.retire_at = None;
        Ok((if abort { "aborting" } else { "rolling-back" }, format!("{} by {}", if abort { "abort" } else { "rollback" }, actor.name)))
    })
    .await
}
