//! Clock offsets from four-timestamp exchanges, as NTP measures them.
//!
//! A client sends a probe at T1 (its clock), the server receives it at T2
//! and answers at T3 (the server's clock), and the client receives the
//! answer at T4. NTP's θ = ((T2-T1)+(T3-T4))/2 is how far the server's
//! clock is ahead of the client's, and δ = (T4-T1)-(T3-T2) the round trip
//! spent on the network. Whatever way the delay splits between the two
//! directions, the true θ lies within δ/2 of the measured one, so δ/2 is
//! the floor of every error bound here.
//!
//! plumb reports offsets from the measured host's side: a node's
//! **offset** is how far its clock is ahead of the reference (the
//! collector), that is −θ, so a node whose clock runs five seconds fast
//! shows +5 s and its timestamps are corrected by subtracting it.
//!
//! [`Window`] keeps the last N samples. Like ntpd's clock filter and
//! chrony, it prefers the sample with the smallest bound, where a sample's
//! bound is its δ/2 plus a growth with its age at a stated drift allowance
//! (chrony's dispersion), so a low-delay sample wins until it is old enough
//! that a fresher, noisier one is known better. Drift (ppm) is the
//! least-squares slope of offset over time, given only once the window
//! spans [`Policy::min_drift_span`].
//!
//! [`Packet`] is the wire format of the UDP probes: fixed size, so a reply
//! is never bigger than the request that asked for it.
//!
//! ```
//! use plumb_model::clock::{Policy, Sample, Window};
//! // The local clock is 5 ms ahead; 1 ms out, 3 ms back (asymmetric).
//! let s = Sample::new(1_000_000_000, 996_000_000 + 1_000_000, 996_000_000 + 1_100_000, 1_000_000_000 + 4_100_000).unwrap();
//! let mut w = Window::new(Policy::default());
//! w.push(s);
//! let e = w.estimate(s.at()).unwrap();
//! assert!((e.offset_ns - 5_000_000).abs() <= e.error_ns);
//! ```

use crate::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// The first bytes of every probe packet.
pub const MAGIC: [u8; 4] = *b"PLCK";
/// The packet format's version.
pub const PACKET_VERSION: u8 = 1;
/// Every probe packet, request or reply, is exactly this long.
pub const PACKET_LEN: usize = 32;

/// Slack for reading a clock (and for the server's receive stamp coming
/// from the kernel while its send stamp comes from user space).
pub const PRECISION_NS: i64 = 1_000;

/// The largest rate at which Linux slews a clock (500 ppm): two samples
/// further apart than their bounds plus this rate allows mean the clock was
/// stepped, and the older samples describe a clock that no longer exists.
pub const MAX_SLEW_PPM: f64 = 500.0;

/// Whether a packet asks or answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// From the client: `t1` set, `t2` and `t3` zero.
    Request,
    /// From the server: `t1` echoed, `t2` and `t3` its own.
    Reply,
}

/// One probe packet: [`MAGIC`], version, kind (0 request, 1 reply), two
/// zero bytes, then T1, T2, T3 as big-endian i64 nanoseconds since the
/// epoch ([`PACKET_LEN`] bytes in all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Request or reply.
    pub kind: PacketKind,
    /// The client's send time, echoed by the server.
    pub t1: i64,
    /// The server's receive time.
    pub t2: i64,
    /// The server's send time.
    pub t3: i64,
}

impl Packet {
    /// A request sent at `t1`.
    pub fn request(t1: i64) -> Packet {
        Packet {
            kind: PacketKind::Request,
            t1,
            t2: 0,
            t3: 0,
        }
    }

    /// The bytes on the wire.
    pub fn encode(&self) -> [u8; PACKET_LEN] {
        let mut b = [0u8; PACKET_LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4] = PACKET_VERSION;
        b[5] = match self.kind {
            PacketKind::Request => 0,
            PacketKind::Reply => 1,
        };
        b[8..16].copy_from_slice(&self.t1.to_be_bytes());
        b[16..24].copy_from_slice(&self.t2.to_be_bytes());
        b[24..32].copy_from_slice(&self.t3.to_be_bytes());
        b
    }

    /// Reads a packet; `None` for anything that is not exactly one of ours
    /// (wrong length, magic, version, kind or reserved bytes), which a
    /// server ignores without answering.
    pub fn decode(b: &[u8]) -> Option<Packet> {
        if b.len() != PACKET_LEN || b[..4] != MAGIC || b[4] != PACKET_VERSION || b[6..8] != [0, 0] {
            return None;
        }
        let kind = match b[5] {
            0 => PacketKind::Request,
            1 => PacketKind::Reply,
            _ => return None,
        };
        let at = |i: usize| i64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Some(Packet {
            kind,
            t1: at(8),
            t2: at(16),
            t3: at(24),
        })
    }
}

/// Why four timestamps are not a sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SampleError {
    /// The answer arrived before the request left (T4 < T1): the local
    /// clock was stepped back during the exchange.
    ReceivedBeforeSent,
    /// The server answered before it received (T3 < T2).
    AnsweredBeforeReceived,
}

impl std::fmt::Display for SampleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SampleError::ReceivedBeforeSent => {
                "the reply arrived before the request was sent (T4 < T1): the local clock was stepped"
            }
            SampleError::AnsweredBeforeReceived => {
                "the server answered before it received the request (T3 < T2)"
            }
        })
    }
}

impl std::error::Error for SampleError {}

/// One exchange: T1 and T4 on the local clock, T2 and T3 on the
/// reference's, nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Client send.
    pub t1: i64,
    /// Server receive.
    pub t2: i64,
    /// Server send.
    pub t3: i64,
    /// Client receive.
    pub t4: i64,
}

impl Sample {
    /// A sample, refused when the timestamps are out of order on either
    /// side.
    pub fn new(t1: i64, t2: i64, t3: i64, t4: i64) -> Result<Sample, SampleError> {
        if t4 < t1 {
            return Err(SampleError::ReceivedBeforeSent);
        }
        if t3 < t2 {
            return Err(SampleError::AnsweredBeforeReceived);
        }
        Ok(Sample { t1, t2, t3, t4 })
    }

    /// NTP's θ = ((T2-T1)+(T3-T4))/2: how far the reference is ahead of
    /// the local clock.
    pub fn theta_ns(&self) -> i64 {
        let sum = (self.t2 as i128 - self.t1 as i128) + (self.t3 as i128 - self.t4 as i128);
        (sum / 2) as i64
    }

    /// How far the local clock is ahead of the reference: −θ.
    pub fn offset_ns(&self) -> i64 {
        -self.theta_ns()
    }

    /// δ = (T4-T1)-(T3-T2), the time on the network. Never negative: a
    /// negative value (the server's clock ran faster than ours during the
    /// exchange) is read as zero.
    pub fn delay_ns(&self) -> i64 {
        ((self.t4 - self.t1) - (self.t3 - self.t2)).max(0)
    }

    /// When the sample was taken, on the local clock: the middle of the
    /// exchange.
    pub fn at(&self) -> i64 {
        ((self.t1 as i128 + self.t4 as i128) / 2) as i64
    }
}

/// How a [`Window`] weighs its samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Samples kept.
    pub capacity: usize,
    /// How fast an old sample's bound grows, in ppm: the most the two
    /// clocks are assumed to drift apart between samples. 15 ppm is NTP's
    /// tolerance (PHI), which any working quartz clock disciplined or not
    /// stays within.
    pub drift_allowance_ppm: f64,
    /// Drift is reported only when the samples used for it span this many
    /// nanoseconds: over seconds, a slope of a few ppm is noise.
    pub min_drift_span_ns: i64,
}

impl Default for Policy {
    /// 64 samples (about ten minutes at one probe every 10 s), 15 ppm,
    /// drift from a minute of samples on.
    fn default() -> Policy {
        Policy {
            capacity: 64,
            drift_allowance_ppm: 15.0,
            min_drift_span_ns: 60_000_000_000,
        }
    }
}

/// What a node knows of its clock: sent to the collector, stored, shown by
/// `plumb clock`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Estimate {
    /// How far the local clock is ahead of the reference, ns.
    pub offset_ns: i64,
    /// The true offset lies within `offset_ns ± error_ns` (at `at`, and
    /// at the moment the estimate was made; see [`Estimate::error_after`]).
    pub error_ns: i64,
    /// The round trip of the sample chosen.
    pub delay_ns: i64,
    /// When that sample was taken (local clock).
    pub at: Timestamp,
    /// When the newest sample of the window was taken (local clock): the
    /// last measurement, whichever sample was chosen.
    pub latest: Timestamp,
    /// How fast the local clock gains on the reference, ppm, when the
    /// window spans long enough to say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_ppm: Option<f64>,
    /// Samples in the window.
    pub samples: u32,
}

impl Estimate {
    /// The bound `age_ns` later, grown at the default drift allowance.
    pub fn error_after(&self, age_ns: i64) -> i64 {
        self.error_ns + grow(age_ns.max(0), Policy::default().drift_allowance_ppm)
    }
}

/// What the kernel says of its own clock's synchronization (`adjtimex(2)`
/// with no change requested): whether a time daemon such as chrony
/// disciplines it, and how far off it may be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelSync {
    /// `STA_UNSYNC` is clear: a time daemon says the clock is
    /// synchronized.
    pub synchronized: bool,
    /// The clock state adjtimex returned: `ok`, `insert leap second`,
    /// `delete leap second`, `leap second in progress`, `leap second
    /// done` or `error` (not synchronized).
    pub state: String,
    /// Maximum error the daemon allows for, microseconds.
    pub max_error_us: i64,
    /// Estimated error, microseconds.
    pub est_error_us: i64,
    /// The frequency correction applied, ppm.
    pub freq_ppm: f64,
}

/// `ppm` parts per million of `ns`, rounded up.
fn grow(ns: i64, ppm: f64) -> i64 {
    (ns.unsigned_abs() as f64 * ppm / 1e6).ceil() as i64
}

/// The last samples of one clock against one reference, and what they
/// say.
#[derive(Debug, Clone)]
pub struct Window {
    policy: Policy,
    /// Oldest first, by local time.
    samples: VecDeque<Sample>,
}

impl Window {
    /// An empty window.
    pub fn new(policy: Policy) -> Window {
        Window {
            policy,
            samples: VecDeque::with_capacity(policy.capacity),
        }
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter()
    }

    /// The bound of a sample on its own: δ/2, clock-reading slack, and the
    /// drift allowance over the exchange itself.
    pub fn sample_error(&self, s: &Sample) -> i64 {
        (s.delay_ns() + 1) / 2 + PRECISION_NS + grow(s.t4 - s.t1, self.policy.drift_allowance_ppm)
    }

    /// The bound of sample `s` read at local time `t`.
    fn error_at(&self, s: &Sample, t: i64) -> i64 {
        self.sample_error(s) + grow(t - s.at(), self.policy.drift_allowance_ppm)
    }

    /// Adds a sample, dropping the oldest beyond the capacity. A sample
    /// that no clock slewing can reconcile with the best one before it
    /// means the clock was stepped: the older samples are dropped, since
    /// they describe the clock before the step. So is a sample from before
    /// the newest one (the local clock went back).
    pub fn push(&mut self, s: Sample) {
        let stepped = match self.samples.back() {
            Some(last) if s.at() < last.at() => true,
            Some(_) => self.best_at(s.at()).is_some_and(|b| {
                let dt = s.at() - b.at();
                let allowed = self.error_at(b, s.at())
                    + self.sample_error(&s)
                    + grow(dt, MAX_SLEW_PPM - self.policy.drift_allowance_ppm);
                (s.offset_ns() - b.offset_ns()).abs() > allowed
            }),
            None => false,
        };
        if stepped {
            self.samples.clear();
        }
        if self.samples.len() == self.policy.capacity.max(1) {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }

    /// The sample whose bound is smallest at local time `t`.
    fn best_at(&self, t: i64) -> Option<&Sample> {
        self.samples.iter().min_by_key(|s| self.error_at(s, t))
    }

    /// What the window says at local time `now`: the offset of the sample
    /// known best at `now` (lowest delay, penalised by age), its bound
    /// grown to `now`, and the drift. `None` when the window is empty.
    pub fn estimate(&self, now: i64) -> Option<Estimate> {
        let best = self.best_at(now)?;
        Some(Estimate {
            offset_ns: best.offset_ns(),
            error_ns: self.error_at(best, now.max(best.at())),
            delay_ns: best.delay_ns(),
            at: Timestamp::from_nanos(best.at()),
            latest: Timestamp::from_nanos(self.samples.back().map_or(best.at(), Sample::at)),
            drift_ppm: self.drift_ppm(),
            samples: self.samples.len() as u32,
        })
    }

    /// The drift in ppm (positive: the local clock gains on the
    /// reference), the least-squares slope of offset over local time of
    /// the better half of the samples by delay (at least three); `None`
    /// until those span [`Policy::min_drift_span_ns`].
    pub fn drift_ppm(&self) -> Option<f64> {
        let mut by_delay: Vec<&Sample> = self.samples.iter().collect();
        by_delay.sort_by_key(|s| s.delay_ns());
        let keep = (by_delay.len() / 2).max(3);
        if by_delay.len() < keep {
            return None;
        }
        let used = &by_delay[..keep];
        let t0 = used.iter().map(|s| s.at()).min()?;
        let t1 = used.iter().map(|s| s.at()).max()?;
        if t1 - t0 < self.policy.min_drift_span_ns {
            return None;
        }
        // Centred on the first sample so that the products stay small.
        let xs: Vec<f64> = used.iter().map(|s| (s.at() - t0) as f64).collect();
        let ys: Vec<f64> = used.iter().map(|s| s.offset_ns() as f64).collect();
        let n = xs.len() as f64;
        let mx = xs.iter().sum::<f64>() / n;
        let my = ys.iter().sum::<f64>() / n;
        let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
        let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
        (sxx > 0.0).then(|| sxy / sxx * 1e6)
    }

    /// The offset at local time `t` and its bound, interpolated between
    /// the samples known best on either side of `t` (each side's bound
    /// grown to `t` at the drift allowance). Outside the samples' span, the
    /// best one with its bound grown. Since the true offset is within each
    /// side's bound, it is within their weighted mean, which is the
    /// bound returned.
    pub fn offset_at(&self, t: i64) -> Option<(i64, i64)> {
        let side = |before: bool| {
            self.samples
                .iter()
                .filter(|s| if before { s.at() <= t } else { s.at() >= t })
                .min_by_key(|s| self.error_at(s, t))
        };
        match (side(true), side(false)) {
            (Some(a), Some(b)) if a.at() < b.at() => {
                let w = (t - a.at()) as f64 / (b.at() - a.at()) as f64;
                let off = a.offset_ns() as f64 * (1.0 - w) + b.offset_ns() as f64 * w;
                let err = self.error_at(a, t) as f64 * (1.0 - w) + self.error_at(b, t) as f64 * w;
                Some((off.round() as i64, err.ceil() as i64))
            }
            (Some(s), _) | (None, Some(s)) => Some((s.offset_ns(), self.error_at(s, t))),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A simulated exchange: the local clock reads `true + offset + rate
    /// × (true − start)`; the reference reads true time. `out` and `back`
    /// are the one-way delays, `held` the server's processing time.
    fn exchange(
        start: i64,
        offset: i64,
        rate_ppm: f64,
        t: i64,
        out: i64,
        held: i64,
        back: i64,
    ) -> Sample {
        let local =
            |true_t: i64| true_t + offset + ((true_t - start) as f64 * rate_ppm / 1e6) as i64;
        let t2 = t + out;
        let t3 = t2 + held;
        Sample::new(local(t), t2, t3, local(t3 + back)).unwrap()
    }

    /// The local clock's true offset at local time `at`.
    fn true_offset(start: i64, offset: i64, rate_ppm: f64, at: i64) -> i64 {
        // Close enough: the rate term changes by ppm of ppm across the
        // difference between local and true time.
        offset + ((at - offset - start) as f64 * rate_ppm / 1e6) as i64
    }

    #[test]
    fn the_formulas_are_ntps() {
        // Client 5 ms ahead: T1=100 local (95 true), 1 ms out, 2 ms held,
        // 3 ms back.
        let s = Sample::new(100_000_000, 96_000_000, 98_000_000, 106_000_000).unwrap();
        assert_eq!(s.theta_ns(), ((96 - 100) + (98 - 106)) * 1_000_000 / 2);
        assert_eq!(s.offset_ns(), 6_000_000);
        assert_eq!(s.delay_ns(), 4_000_000);
        // The asymmetry (1 ms out, 3 ms back) is the whole error, and it is
        // within δ/2.
        assert!((s.offset_ns() - 5_000_000).abs() <= s.delay_ns() / 2);
    }

    #[test]
    fn out_of_order_timestamps_are_refused() {
        assert_eq!(
            Sample::new(10, 5, 6, 9),
            Err(SampleError::ReceivedBeforeSent)
        );
        assert_eq!(
            Sample::new(10, 6, 5, 20),
            Err(SampleError::AnsweredBeforeReceived)
        );
    }

    #[test]
    fn packets_round_trip_and_strangers_are_ignored() {
        let p = Packet {
            kind: PacketKind::Reply,
            t1: -5,
            t2: 1_700_000_000_000_000_000,
            t3: i64::MAX,
        };
        assert_eq!(Packet::decode(&p.encode()), Some(p));
        let r = Packet::request(42).encode();
        assert_eq!(Packet::decode(&r).unwrap().kind, PacketKind::Request);
        assert_eq!(Packet::decode(&r[..31]), None, "short");
        let mut long = r.to_vec();
        long.push(0);
        assert_eq!(Packet::decode(&long), None, "long");
        for i in [0usize, 4, 5, 6, 7] {
            let mut bad = r;
            bad[i] ^= 0x80;
            assert_eq!(Packet::decode(&bad), None, "byte {i} altered");
        }
    }

    #[test]
    fn the_lowest_delay_sample_wins_until_it_is_old() {
        let mut w = Window::new(Policy::default());
        let sec = 1_000_000_000i64;
        // A 100 us round trip, then noisy 20 ms ones.
        w.push(exchange(0, 0, 0.0, 1000 * sec, 50_000, 0, 50_000));
        for i in 1..10 {
            w.push(exchange(
                0,
                0,
                0.0,
                (1000 + i) * sec,
                2_000_000,
                0,
                18_000_000,
            ));
        }
        let e = w.estimate(1010 * sec).unwrap();
        assert_eq!(e.delay_ns, 100_000);
        assert_eq!(e.samples, 10);
        // 15 ppm over half an hour is 27 ms: a 10 ms bound now beats it.
        let late = exchange(0, 0, 0.0, 2800 * sec, 2_000_000, 0, 18_000_000);
        w.push(late);
        let e = w.estimate(late.at()).unwrap();
        assert_eq!(e.delay_ns, 20_000_000, "{e:?}");
    }

    #[test]
    fn a_stepped_clock_starts_the_window_again() {
        let mut w = Window::new(Policy::default());
        let sec = 1_000_000_000i64;
        for i in 0..5 {
            w.push(exchange(0, 0, 0.0, i * sec, 100_000, 0, 100_000));
        }
        // Stepped 5 s ahead a second later: no slewing does that.
        w.push(exchange(0, 5 * sec, 0.0, 6 * sec, 100_000, 0, 100_000));
        assert_eq!(w.samples().count(), 1);
        let e = w.estimate(11 * sec).unwrap();
        assert!((e.offset_ns - 5 * sec).abs() < 1_000, "{e:?}");
    }

    #[test]
    fn drift_needs_a_long_enough_span() {
        let sec = 1_000_000_000i64;
        let mut w = Window::new(Policy::default());
        for i in 0..10 {
            w.push(exchange(0, 0, 40.0, i * 5 * sec, 100_000, 0, 100_000));
        }
        assert_eq!(w.drift_ppm(), None, "45 s is too short");
        for i in 10..40 {
            w.push(exchange(0, 0, 40.0, i * 5 * sec, 100_000, 0, 100_000));
        }
        let d = w.drift_ppm().unwrap();
        assert!((d - 40.0).abs() < 1.0, "{d}");
    }

    #[test]
    fn interpolation_follows_a_drifting_clock() {
        let sec = 1_000_000_000i64;
        let mut w = Window::new(Policy::default());
        w.push(exchange(0, 0, 10.0, 0, 100_000, 0, 100_000));
        w.push(exchange(0, 0, 10.0, 100 * sec, 100_000, 0, 100_000));
        let (off, err) = w.offset_at(50 * sec).unwrap();
        assert!((off - 500_000).abs() < 2_000, "{off}");
        assert!(err < 1_000_000, "{err}");
        assert!(w.offset_at(-sec).is_some(), "before the first sample");
        assert_eq!(Window::new(Policy::default()).offset_at(0), None);
    }

    proptest! {
        /// Whatever the asymmetry of the path, the server's holding time,
        /// the clocks' offset and a drift within the allowance, the true
        /// offset lies within the reported bound, now and at any sample's
        /// time.
        #[test]
        fn the_true_offset_is_within_the_bound(
            offset in -10_000_000_000i64..10_000_000_000,
            rate_ppm in -14.0f64..14.0,
            paths in proptest::collection::vec((0i64..50_000_000, 0i64..50_000_000, 0i64..2_000_000, 1i64..30_000_000_000), 1..40),
            later in 0i64..600_000_000_000,
        ) {
            let start = 1_700_000_000_000_000_000i64;
            let mut w = Window::new(Policy::default());
            let mut t = start;
            for (out, back, held, gap) in &paths {
                // Exchanges follow each other, as a prober sends them.
                t += gap;
                let s = exchange(start, offset, rate_ppm, t, *out, *held, *back);
                t += out + held + back;
                let truth = true_offset(start, offset, rate_ppm, s.at());
                prop_assert!((s.offset_ns() - truth).abs() <= w.sample_error(&s), "{s:?}");
                w.push(s);
            }
            prop_assert_eq!(w.samples().count(), paths.len(), "no false step");
            let now = w.samples().last().unwrap().t4 + later;
            let e = w.estimate(now).unwrap();
            let truth = true_offset(start, offset, rate_ppm, now);
            prop_assert!((e.offset_ns - truth).abs() <= e.error_ns, "{e:?} truth {truth}");
            prop_assert!(e.error_ns >= e.delay_ns / 2);
            for s in w.samples() {
                let mid = s.at() + 7_000_000;
                let (off, err) = w.offset_at(mid).unwrap();
                let truth = true_offset(start, offset, rate_ppm, mid);
                prop_assert!((off - truth).abs() <= err, "at {mid}: {off} ± {err}, truth {truth}");
            }
        }
    }
}
