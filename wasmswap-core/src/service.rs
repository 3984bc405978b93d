//! [`Service`]: a named slot whose route is swapped atomically while it serves.
//!
//! Each call loads the route once (`ArcSwap::load`, no lock), picks a version,
//! takes a [`Lease`] on it and drops the guard before anything is awaited; the
//! call then finishes on that version whatever happens to the route. New calls
//! see a stored route at once. The route before the current one is kept, with
//! its compiled code and `InstancePre`, so a rollback is one pointer swap.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value as Json;
use tokio::sync::broadcast;

use crate::error::{Error, Result};
use crate::metrics::MirrorOutcome;
use crate::route::{CandidateMode, Route, RouteSummary, sticky_bucket};
use crate::version::{Lease, Version};

/// A named service with an atomically swappable [`Route`]. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    inner: Arc<ServiceInner>,
}

struct ServiceInner {
    name: String,
    current: ArcSwap<Generation>,
    /// The route before the current one, kept warm for rollback. Only
    /// touched by route changes, which are serialised by this lock.
    previous: Mutex<Option<Arc<Generation>>>,
    events: broadcast::Sender<RouteEvent>,
    /// Spreads unkeyed calls evenly: a Weyl sequence, so any window of calls
    /// gets the candidate's share to within a call or two.
    sequence: AtomicU64,
}

struct Generation {
    route: Route,
    number: u64,
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.inner.name)
            .field("route", &self.inner.current.load().route.summary())
            .finish()
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Service>();
};

/// What a route change did, published to [`Service::subscribe`]rs and logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteEvent {
    /// The service.
    pub service: String,
    /// Route generation after the change (1 for the first route).
    pub generation: u64,
    /// Swap or rollback.
    pub kind: RouteChange,
    /// The route before.
    pub from: RouteSummary,
    /// The route after.
    pub to: RouteSummary,
    /// When it happened.
    pub at: SystemTime,
}

/// Kinds of route change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteChange {
    /// A new route was stored.
    Swap,
    /// The previous route was restored.
    Rollback,
}

/// The version a call was routed to, held until the call ends.
#[derive(Debug)]
pub struct Pick {
    /// Lease on the version that answers.
    pub lease: Lease,
    /// Lease on a version that runs a mirrored copy of the call.
    pub mirror: Option<(Lease, bool)>,
    /// Route generation the pick was made under.
    pub generation: u64,
}

/// A call's answer and the version that gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Served<T> {
    /// The answer.
    pub value: T,
    /// Label of the version that answered.
    pub version: String,
    /// Route generation the call was routed under.
    pub generation: u64,
}

/// Returned by a route change: the versions the change retired, so the
/// caller can wait for their calls to finish.
#[must_use = "a swap's drain handle tells when retired versions are idle"]
#[derive(Debug)]
pub struct Swap {
    /// Route generation after the change.
    pub generation: u64,
    retired: Vec<Version>,
}

/// Outcome of waiting for a swap's retired versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainReport {
    /// `(label, calls still in flight)` for each version that had not drained
    /// by the deadline; empty when everything drained.
    pub still_in_flight: Vec<(String, u64)>,
}

impl DrainReport {
    /// Whether every retired version drained.
    pub fn is_drained(&self) -> bool {
        self.still_in_flight.is_empty()
    }
}

impl Swap {
    /// Versions the change took out of the route.
    pub fn retired(&self) -> &[Version] {
        &self.retired
    }

    /// Waits until no call holds a retired version, or `timeout` passes.
    pub async fn drained(&self, timeout: Duration) -> DrainReport {
        // One deadline for all: waiting on each in turn must not add up.
        let deadline = tokio::time::Instant::now() + timeout;
        let mut still_in_flight = Vec::new();
        for v in &self.retired {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Err(n) = v.drained(left).await {
                still_in_flight.push((v.label().to_string(), n));
            }
        }
        DrainReport { still_in_flight }
    }
}

impl Service {
    /// A service serving `route` from the start.
    pub fn new(name: impl Into<String>, route: Route) -> Result<Self> {
        route.validate()?;
        let name = name.into();
        if name.is_empty() {
            return Err(Error::InvalidConfig("service name is empty".into()));
        }
        let (events, _) = broadcast::channel(256);
        tracing::info!(service = %name, route = %route.summary(), "service created");
        Ok(Self {
            inner: Arc::new(ServiceInner {
                name,
                current: ArcSwap::from_pointee(Generation { route, number: 1 }),
                previous: Mutex::new(None),
                events,
                sequence: AtomicU64::new(0),
            }),
        })
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The current route.
    pub fn route(&self) -> Route {
        self.inner.current.load().route.clone()
    }

    /// The current route generation (incremented by every change).
    pub fn generation(&self) -> u64 {
        self.inner.current.load().number
    }

    /// The route a [`rollback`](Self::rollback) would restore, if any.
    pub fn previous_route(&self) -> Option<Route> {
        self.inner.previous.lock().as_ref().map(|g| g.route.clone())
    }

    /// Subscribes to route changes.
    pub fn subscribe(&self) -> broadcast::Receiver<RouteEvent> {
        self.inner.events.subscribe()
    }

    /// Stores a new route. Calls already running finish on the version they
    /// started on; calls starting after this returns use the new route. The
    /// old route is kept warm for [`rollback`](Self::rollback).
    pub fn set_route(&self, route: Route) -> Result<Swap> {
        route.validate()?;
        let mut previous = self.inner.previous.lock();
        let old = self.inner.current.load_full();
        let new = Arc::new(Generation {
            route,
            number: old.number + 1,
        });
        self.inner.current.store(new.clone());
        *previous = Some(old.clone());
        drop(previous);
        Ok(self.changed(RouteChange::Swap, &old, &new))
    }

    /// Restores the previous route: one pointer swap, no compilation. The
    /// route rolled back from becomes the previous one, so a second rollback
    /// rolls forward again.
    pub fn rollback(&self) -> Result<Swap> {
        let mut previous = self.inner.previous.lock();
        let Some(prev) = previous.take() else {
            return Err(Error::InvalidConfig(format!(
                "service `{}` has no previous route to roll back to",
                self.inner.name
            )));
        };
        let old = self.inner.current.load_full();
        let new = Arc::new(Generation {
            route: prev.route.clone(),
            number: old.number + 1,
        });
        self.inner.current.store(new.clone());
        *previous = Some(old.clone());
        drop(previous);
        Ok(self.changed(RouteChange::Rollback, &old, &new))
    }

    /// Forgets the warm previous route (so its versions can be freed once
    /// their calls drain), waiting up to `timeout` for them to drain.
    pub async fn forget_previous(&self, timeout: Duration) -> DrainReport {
        let prev = self.inner.previous.lock().take();
        let current = self.inner.current.load_full();
        let retired: Vec<Version> = prev
            .map(|g| retired(&g.route, &current.route))
            .unwrap_or_default();
        Swap {
            generation: current.number,
            retired,
        }
        .drained(timeout)
        .await
    }

    fn changed(&self, kind: RouteChange, old: &Generation, new: &Generation) -> Swap {
        let event = RouteEvent {
            service: self.inner.name.clone(),
            generation: new.number,
            kind,
            from: old.route.summary(),
            to: new.route.summary(),
            at: SystemTime::now(),
        };
        tracing::info!(
            service = %event.service,
            generation = event.generation,
            kind = ?kind,
            from = %event.from,
            to = %event.to,
            "route changed"
        );
        // No subscribers is fine.
        let _ = self.inner.events.send(event);
        Swap {
            generation: new.number,
            retired: retired(&old.route, &new.route),
        }
    }

    /// Picks the version for one call and leases it. `key` makes the pick
    /// sticky: the same key gets the same side of a split on every node, for
    /// as long as the route stays.
    pub fn pick(&self, key: Option<&str>) -> Pick {
        // The guard lives only inside this function: never across an await.
        let current = self.inner.current.load();
        let route = &current.route;
        let (lease, mirror) = match &route.candidate {
            Some(c) if c.weight.basis_points() > 0 => {
                let bucket = match key {
                    Some(k) => sticky_bucket(&self.inner.name, k),
                    None => self.next_unkeyed_bucket(),
                };
                let chosen = bucket < c.weight.basis_points();
                match c.mode {
                    CandidateMode::Split if chosen => (c.version.lease(), None),
                    CandidateMode::Split => (route.stable.lease(), None),
                    CandidateMode::Mirror { side_effects } => (
                        route.stable.lease(),
                        chosen.then(|| (c.version.lease(), side_effects)),
                    ),
                }
            }
            _ => (route.stable.lease(), None),
        };
        Pick {
            lease,
            mirror,
            generation: current.number,
        }
    }

    fn next_unkeyed_bucket(&self) -> u16 {
        // Golden-ratio steps around a 2^64 circle, scaled to 0..10000.
        const PHI: u64 = 0x9E37_79B9_7F4A_7C15;
        let x = self
            .inner
            .sequence
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(PHI);
        ((u128::from(x) * 10_000) >> 64) as u16
    }

    /// Routes one JSON call (see [`Version::invoke_json`]). With a mirror
    /// route, the candidate runs a copy of the call in the background; its
    /// answer is compared with this one and recorded in its counters, never
    /// returned.
    pub async fn invoke_json(
        &self,
        key: Option<&str>,
        function: &str,
        args: &Json,
    ) -> Result<Served<Json>> {
        self.invoke_json_labelled(key, function, args).await.1
    }

    /// Like [`invoke_json`](Self::invoke_json), also naming the version
    /// that took the call when it fails (a server marks every answer with
    /// the version that produced it, errors included).
    pub async fn invoke_json_labelled(
        &self,
        key: Option<&str>,
        function: &str,
        args: &Json,
    ) -> (String, Result<Served<Json>>) {
        let pick = self.pick(key);
        let label = pick.lease.version().label().to_string();
        let result = self.invoke_picked(pick, function, args).await;
        (label, result)
    }

    async fn invoke_picked(&self, pick: Pick, function: &str, args: &Json) -> Result<Served<Json>> {
        let version = pick.lease.version().clone();
        let result = version.invoke_json(function, args).await;
        if let Some((mirror, side_effects)) = pick.mirror {
            let expected = result.as_ref().map(Clone::clone).map_err(|e| e.kind());
            let (function, args) = (function.to_string(), args.clone());
            tokio::spawn(async move {
                let candidate = mirror.version();
                // The candidate's own grants, or fewer.
                let caps = (!side_effects).then(|| candidate.capabilities().without_side_effects());
                let got = candidate.invoke_json_with(&function, &args, caps).await;
                let outcome = match (&expected, &got) {
                    (Ok(a), Ok(b)) if a == b => MirrorOutcome::Equal,
                    (Ok(_), Ok(_)) => MirrorOutcome::Different,
                    (Err(a), Err(b)) if *a == b.kind() => MirrorOutcome::Equal,
                    _ => MirrorOutcome::Failed,
                };
                candidate.record_mirror(outcome);
                drop(mirror);
            });
        }
        let value = result?;
        Ok(Served {
            value,
            version: version.label().to_string(),
            generation: pick.generation,
        })
    }
}

#[cfg(feature = "http")]
impl Service {
    /// Routes one HTTP request to a wasi-http version (see
    /// [`Version::handle`]). `key` makes the pick sticky, as for
    /// [`invoke_json`](Self::invoke_json). Mirror routes send HTTP calls to
    /// the stable version only: mirroring a request needs a buffered copy of
    /// its body, which this layer does not make.
    pub async fn handle<B>(
        &self,
        key: Option<&str>,
        request: http::Request<B>,
    ) -> Result<Served<crate::HttpResponse>>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let pick = self.pick(key);
        let version = pick.lease.version().clone();
        let value = version.handle(request).await?;
        Ok(Served {
            value,
            version: version.label().to_string(),
            generation: pick.generation,
        })
    }
}

/// Versions in `old` that `new` no longer references.
fn retired(old: &Route, new: &Route) -> Vec<Version> {
    old.versions()
        .filter(|v| !new.versions().any(|n| n.same_as(v)))
        .cloned()
        .collect()
}
