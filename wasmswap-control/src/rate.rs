//! Per-caller rate limits by endpoint class (GCRA from `governor`).
//!
//! Each class has its own budget per minute; a caller exhausting one class
//! can still use the others. Answers carry `X-RateLimit-Limit`,
//! `X-RateLimit-Remaining` and `X-RateLimit-Reset` (seconds until the
//! budget is full again); a refusal is `429` with `Retry-After`.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use serde::Deserialize;

/// Endpoint classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Module and interface registration.
    Register,
    /// Deployments and their controls.
    Deploy,
    /// `/wasm/execute`.
    Execute,
    /// Reads.
    Read,
    /// Other changes (deletes, approvals, node management).
    Write,
    /// Logins, keyed by client address.
    Login,
    /// Node heartbeats and registrations, keyed by node.
    Node,
}

/// Requests per minute per caller, by class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    /// Registrations. By default 10.
    pub register: u32,
    /// Deployment actions. By default 20.
    pub deploy: u32,
    /// Executions. By default 1000.
    pub execute: u32,
    /// Reads. By default 300.
    pub read: u32,
    /// Other changes. By default 60.
    pub write: u32,
    /// Logins per client address. By default 20.
    pub login: u32,
    /// Node calls (heartbeats per node; registrations and binary
    /// downloads per address, which nodes behind one address share). By
    /// default 6000.
    pub node: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            register: 10,
            deploy: 20,
            execute: 1000,
            read: 300,
            write: 60,
            login: 20,
            node: 6000,
        }
    }
}

struct Limiter {
    per_minute: u32,
    limiter: RateLimiter<
        String,
        DefaultKeyedStateStore<String>,
        DefaultClock,
        StateInformationMiddleware,
    >,
}

/// The limiters, one per class.
#[derive(Clone)]
pub struct RateLimiters {
    classes: Arc<Vec<(Class, Limiter)>>,
}

impl std::fmt::Debug for RateLimiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RateLimiters")
    }
}

/// What a check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Allowed or not.
    pub allowed: bool,
    /// Budget per minute.
    pub limit: u32,
    /// Requests left now.
    pub remaining: u32,
    /// Seconds until the budget is full again.
    pub reset_secs: u64,
    /// Seconds to wait before retrying (when refused).
    pub retry_after_secs: u64,
}

impl RateLimiters {
    /// Limiters with these budgets.
    pub fn new(limits: &RateLimits) -> Self {
        let make = |class, n: u32| {
            let n = NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN);
            (
                class,
                Limiter {
                    per_minute: n.get(),
                    limiter: RateLimiter::keyed(Quota::per_minute(n))
                        .with_middleware::<StateInformationMiddleware>(),
                },
            )
        };
        Self {
            classes: Arc::new(vec![
                make(Class::Register, limits.register),
                make(Class::Deploy, limits.deploy),
                make(Class::Execute, limits.execute),
                make(Class::Read, limits.read),
                make(Class::Write, limits.write),
                make(Class::Login, limits.login),
                make(Class::Node, limits.node),
            ]),
        }
    }

    /// Takes one request from `key`'s budget in `class`.
    pub fn check(&self, class: Class, key: &str) -> Decision {
        let Some((_, l)) = self.classes.iter().find(|(c, _)| *c == class) else {
            return Decision {
                allowed: true,
                limit: 0,
                remaining: 0,
                reset_secs: 0,
                retry_after_secs: 0,
            };
        };
        let per_token_ms = 60_000 / u64::from(l.per_minute);
        let key = key.to_string();
        match l.limiter.check_key(&key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    limit: l.per_minute,
                    remaining,
                    reset_secs: (u64::from(l.per_minute - remaining) * per_token_ms).div_ceil(1000),
                    retry_after_secs: 0,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Decision {
                    allowed: false,
                    limit: l.per_minute,
                    remaining: 0,
                    reset_secs: (u64::from(l.per_minute) * per_token_ms).div_ceil(1000),
                    retry_after_secs: wait.as_millis().div_ceil(1000).max(1) as u64,
                }
            }
        }
    }

    /// Drops the state of callers that are back to a full budget.
    pub fn forget_idle(&self) {
        for (_, l) in self.classes.iter() {
            l.limiter.retain_recent();
            l.limiter.shrink_to_fit();
        }
    }
}
