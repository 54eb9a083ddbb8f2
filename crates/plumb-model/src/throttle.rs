//! Fleet-wide throttles: at most N runs anywhere in the fleet holding the
//! same throttle at once, as leases held at the collector.
//!
//! A run asks for a slot ([`LeaseRequest`]); the answer ([`LeaseState`])
//! says whether it holds one or where it stands in the queue. A holder
//! renews its lease every [`RENEW_EVERY`]; a lease not renewed for its TTL
//! ([`LEASE_TTL`] by default) expires, so a node that died or was cut off
//! never holds a slot for ever. A waiter renews its place the same way (by
//! asking again), so a dead waiter does not block the queue. The queue is
//! first come, first served. These are the wire types; the store keeps the
//! leases (`plumb_store::Throttles`) and the collector serves them.

use crate::{Timestamp, Uuid};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a lease (or a place in the queue) lasts without renewal,
/// unless the request asks for another TTL.
pub const LEASE_TTL: Duration = Duration::from_secs(15);

/// How often a holder renews its lease, and a waiter asks again: a third
/// of [`LEASE_TTL`], so two renewals may fail before the lease is lost.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

/// The shortest TTL a request may ask for.
pub const MIN_TTL: Duration = Duration::from_millis(100);

/// The longest TTL a request may ask for: a dead holder keeps its slot
/// at most this long.
pub const MAX_TTL: Duration = Duration::from_secs(600);

/// The most slots a throttle may have.
pub const MAX_SLOTS: u32 = 4096;

/// The longest throttle name.
pub const MAX_NAME: usize = 64;

/// Whether `name` is a good throttle name: 1 to [`MAX_NAME`] letters,
/// digits, `-`, `_` or `.`, not starting with `.` (it names a directory
/// of slot files for host throttles).
pub fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A request for a slot of a throttle (or to keep one's place in its
/// queue): `POST /api/v1/throttles/{name}/acquire`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRequest {
    /// Who asks: unique per waiting or holding run (plumb uses the run's
    /// id). Asking again with the same holder renews, never adds.
    pub holder: String,
    /// How many may hold the throttle at once; every request for the same
    /// throttle must agree while anyone holds it or waits for it.
    pub slots: u32,
    /// How long the lease or the place lasts without renewal, in ms
    /// (default [`LEASE_TTL`]).
    #[serde(default)]
    pub ttl_ms: Option<u64>,
    /// The run that will hold the slot.
    #[serde(default)]
    pub run_id: Option<Uuid>,
    /// The node (host) asking.
    #[serde(default)]
    pub node: String,
    /// The asking process.
    #[serde(default)]
    pub pid: Option<u32>,
}

/// A renewal: `POST /api/v1/throttles/{name}/renew`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewRequest {
    /// The holder, as it asked.
    pub holder: String,
    /// The new TTL from now, in ms (default [`LEASE_TTL`]).
    #[serde(default)]
    pub ttl_ms: Option<u64>,
}

/// A release: `POST /api/v1/throttles/{name}/release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRequest {
    /// The holder, as it asked.
    pub holder: String,
}

/// Where a holder stands after asking or renewing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseState {
    /// It holds a slot.
    pub granted: bool,
    /// Its place in the queue, from 1; 0 when granted.
    pub position: u32,
    /// How many hold the throttle now (with it, when granted).
    pub holders: u32,
    /// How many may.
    pub slots: u32,
    /// How many wait, with it when it waits.
    pub queued: u32,
    /// When its lease (or place) expires unless renewed (collector clock).
    pub expires: Timestamp,
}

/// One lease or place in a queue, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Who holds or waits.
    pub holder: String,
    /// The run, when the holder said.
    pub run_id: Option<Uuid>,
    /// The node.
    pub node: String,
    /// The process.
    pub pid: Option<u32>,
    /// When it asked first (collector clock).
    pub enqueued: Timestamp,
    /// When it was granted, if it was.
    pub granted: Option<Timestamp>,
    /// When it expires unless renewed.
    pub expires: Timestamp,
}

/// A throttle with its holders and its queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThrottleView {
    /// Its name.
    pub name: String,
    /// How many may hold it at once.
    pub slots: u32,
    /// Who holds it, earliest grant first.
    pub holders: Vec<Lease>,
    /// Who waits, first in line first.
    pub queue: Vec<Lease>,
}

/// "1st", "2nd", "3rd", "4th", ... "11th", "21st".
pub fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ordinals() {
        assert!(name_ok("gpu"));
        assert!(name_ok("a-b_c.d"));
        for bad in ["", ".x", "a/b", "a b", &"x".repeat(65)] {
            assert!(!name_ok(bad), "{bad}");
        }
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111]
            .into_iter()
            .map(ordinal)
            .collect();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
                "111th"
            ]
        );
    }
}
