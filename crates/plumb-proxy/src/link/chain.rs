//! Which toxics apply to one direction of one connection, and their state.

use crate::model::{Stream, ToxicKind};
use crate::proxy::{Proxy, ToxicEntry, ToxicSet};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Whether a toxic applies to a connection from `ip`: its client ranges
/// match and a roll against its toxicity succeeds.
pub(super) fn roll(t: &ToxicEntry, ip: IpAddr) -> bool {
    if let Some(ranges) = &t.spec.clients
        && !ranges.iter().any(|r| r.contains(ip))
    {
        return false;
    }
    t.spec.toxicity >= 1.0 || (t.spec.toxicity > 0.0 && fastrand::f32() < t.spec.toxicity)
}

/// Per connection and direction: which toxics applied, and their state.
pub(super) struct Rolled {
    pub(super) version: u64,
    pub(super) active: bool,
    pub(super) since: Instant,
    /// Bandwidth: when the next byte may leave.
    pub(super) next_free: Instant,
    /// limit_data: bytes passed so far.
    pub(super) passed: u64,
    /// http_drip: inside a response body.
    pub(super) http_body: bool,
    /// http_drip: the last bytes of headers seen, to find their end across
    /// chunks.
    pub(super) http_tail: Vec<u8>,
}

pub(super) struct Chain {
    pub(super) stream: Stream,
    pub(super) ip: IpAddr,
    pub(super) rolled: HashMap<String, Rolled>,
    pub(super) active: Vec<Arc<ToxicEntry>>,
}

impl Chain {
    pub(super) fn new(stream: Stream, ip: IpAddr) -> Self {
        Chain {
            stream,
            ip,
            rolled: HashMap::new(),
            active: Vec::new(),
        }
    }

    /// Re-reads the toxic set. Toxics seen before keep their roll and state
    /// unless they were updated. Returns true if an active timeout toxic was
    /// removed, which closes the connection as in Toxiproxy.
    pub(super) fn rebuild(&mut self, set: &ToxicSet, proxy: &Proxy) -> bool {
        let now = Instant::now();
        let mut timeout_removed = false;
        let mut keep = HashMap::with_capacity(set.len());
        let mut active = Vec::new();
        for t in set.iter() {
            if t.spec.stream != self.stream || t.spec.kind.acts_on_open() {
                continue;
            }
            let r = match self.rolled.remove(&t.spec.name) {
                Some(r) if r.version == t.version => r,
                _ => {
                    let on = roll(t, self.ip);
                    if on {
                        proxy
                            .metrics
                            .activated(&t.spec.name, t.spec.kind.type_name());
                    }
                    Rolled {
                        version: t.version,
                        active: on,
                        since: now,
                        next_free: now,
                        passed: 0,
                        http_body: false,
                        http_tail: Vec::new(),
                    }
                }
            };
            if r.active {
                active.push(Arc::clone(t));
            }
            keep.insert(t.spec.name.clone(), r);
        }
        for (name, r) in self.rolled.drain() {
            let was_timeout = self
                .active
                .iter()
                .any(|t| t.spec.name == name && matches!(t.spec.kind, ToxicKind::Timeout { .. }));
            if r.active && was_timeout {
                timeout_removed = true;
            }
        }
        self.rolled = keep;
        self.active = active;
        timeout_removed
    }

    /// Takes the toxic set that `toxics` now holds ([`Chain::rebuild`]).
    /// Returns true when the connection must end.
    pub(super) fn refresh(
        &mut self,
        toxics: &mut watch::Receiver<ToxicSet>,
        proxy: &Proxy,
    ) -> bool {
        let set = toxics.borrow_and_update().clone();
        self.rebuild(&set, proxy)
    }

    /// The earliest moment an active timeout toxic closes the connection.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.active
            .iter()
            .filter_map(|t| match t.spec.kind {
                ToxicKind::Timeout { timeout } if timeout > 0 => self
                    .rolled
                    .get(&t.spec.name)
                    .map(|r| r.since + Duration::from_millis(timeout as u64)),
                _ => None,
            })
            .min()
    }
}
