//! Which collector does the work that must happen once.
//!
//! Several collectors may serve from one store (PostgreSQL, behind a load
//! balancer or listed together in agents' configuration). Each takes any
//! request, but alert evaluation and notification, error grouping, node
//! states and slow-run evidence run on one of them at a time: the holder
//! of the store's lease `collector` ([`plumb_store::Leases`]). Every
//! collector tries to take or renew it every [`RENEW`]; the lease lasts
//! [`TTL`], so when its holder dies another takes over within
//! `TTL + RENEW` (10 s), and one that stops cleanly steps down so the
//! next takes over at once. A collector that cannot reach the store
//! counts itself as not leading. On the embedded store there is one
//! collector, which leads from its first renewal.

use crate::AppState;
use plumb_model::Timestamp;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The lease's name.
pub const LEASE: &str = "collector";
/// How long a lease lasts unless renewed.
pub const TTL: Duration = Duration::from_secs(8);
/// How often every collector takes or renews the lease.
pub const RENEW: Duration = Duration::from_secs(2);

/// This collector's claim on the lease: its holder id and whether it held
/// the lease at the last renewal. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Leader {
    holder: Arc<str>,
    leading: Arc<AtomicBool>,
}

impl Default for Leader {
    fn default() -> Leader {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "collector".into());
        Leader {
            holder: format!("{host}:{}:{}", std::process::id(), plumb_model::new_id()).into(),
            leading: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Leader {
    /// Whether this collector does the work that must happen once.
    pub fn is_leading(&self) -> bool {
        self.leading.load(Ordering::Relaxed)
    }

    /// This collector's holder id.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Takes or renews the lease once; returns whether this collector
    /// leads now.
    pub async fn renew(&self, state: &AppState) -> bool {
        let holder = self.holder.to_string();
        let got = state
            .db
            .write(move |s| s.lead(LEASE, &holder, TTL, Timestamp::now()))
            .await;
        let leading = match got {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the collector lease; not leading until the store answers");
                false
            }
        };
        let was = self.leading.swap(leading, Ordering::Relaxed);
        if leading != was {
            if leading {
                tracing::info!(holder = %self.holder, "this collector now leads: alerts, error grouping and node states run here");
            } else {
                tracing::info!(holder = %self.holder, "this collector no longer leads");
            }
        }
        leading
    }

    /// Gives the lease up (a clean shutdown), so another collector takes
    /// over without waiting for it to expire.
    pub async fn step_down(&self, state: &AppState) {
        if !self.leading.swap(false, Ordering::Relaxed) {
            return;
        }
        let holder = self.holder.to_string();
        let _ = state.db.write(move |s| s.step_down(LEASE, &holder)).await;
    }
}

/// Starts the renewal task (with a tokio runtime), after one renewal so
/// that a lone collector leads from its first tick.
pub async fn start(state: &AppState) {
    let leader = state.leader.clone();
    leader.renew(state).await;
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let state = state.clone();
    rt.spawn(async move {
        let mut tick = tokio::time::interval(RENEW);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            leader.renew(&state).await;
        }
    });
}
