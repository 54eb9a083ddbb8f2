//! The client side of fleet-wide throttles: `plumb run --throttle NAME=N`
//! with a collector configured asks the collector for a lease
//! ([`FleetThrottle::ask`], repeated while it waits, which also keeps its
//! place in the queue), then holds it ([`HeldLease`]): a thread renews it
//! every third of its TTL while the command runs and releases it when
//! dropped, however the command ended. A `plumb run` killed with SIGKILL
//! releases nothing; its lease expires after the TTL.
//!
//! The TTL is `plumb_model::throttle::LEASE_TTL` (15 s) unless
//! `PLUMB_THROTTLE_TTL_MS` says otherwise (tests use a short one).

use anyhow::{Context, Result};
use plumb_model::throttle::{LEASE_TTL, LeaseRequest, LeaseState, ReleaseRequest, RenewRequest};
use plumb_model::{Uuid, display};
use plumb_record::throttle::ThrottleSpec;
use std::sync::mpsc;
use std::time::Duration;

/// The environment variable that sets the lease TTL in ms (hidden; for
/// tests and for fleets that want a dead node's slots back sooner).
pub const TTL_ENV: &str = "PLUMB_THROTTLE_TTL_MS";

/// The longest a waiting run goes without asking again.
const MAX_POLL: Duration = Duration::from_secs(1);

/// How often the first runs in line (as many as there are slots) ask.
const HEAD_POLL: Duration = Duration::from_millis(200);

/// How long one lease request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The lease TTL: [`TTL_ENV`], else [`LEASE_TTL`].
pub fn ttl() -> Result<Duration> {
    match std::env::var(TTL_ENV) {
        Ok(v) if !v.trim().is_empty() => {
            let ms: u64 = v.trim().parse().with_context(|| {
                format!("{TTL_ENV}=`{v}`: expected a whole number of milliseconds")
            })?;
            anyhow::ensure!(ms > 0, "{TTL_ENV}=0: a lease must last some time");
            Ok(Duration::from_millis(ms))
        }
        _ => Ok(LEASE_TTL),
    }
}

/// What asking the collector gave.
#[derive(Debug)]
pub enum Asked {
    /// Where the run stands.
    State(LeaseState),
    /// The collector could not be reached or is busy: keep waiting and
    /// ask again (never fall back to local slots, which could exceed N
    /// fleet-wide).
    Away(String),
}

/// A throttle held at a collector, for one run.
#[derive(Debug, Clone)]
pub struct FleetThrottle {
    client: plumb_http::Client,
    spec: ThrottleSpec,
    req: LeaseRequest,
    ttl: Duration,
}

impl FleetThrottle {
    /// The throttle `spec` at the collector `url`, for the run `run_id`.
    pub fn new(
        cfg: &crate::config::Config,
        url: &str,
        spec: &ThrottleSpec,
        run_id: Uuid,
    ) -> Result<FleetThrottle> {
        let ttl = ttl()?;
        let config = plumb_http::Config {
            timeout: REQUEST_TIMEOUT.min(ttl.max(Duration::from_secs(1))),
            retry: plumb_http::Retry::NEVER,
            ..crate::target::client_config(cfg, url)
        };
        let client = plumb_http::Client::new(&config)?;
        Ok(FleetThrottle {
            client,
            spec: spec.clone(),
            req: LeaseRequest {
                holder: run_id.to_string(),
                slots: spec.slots,
                ttl_ms: Some(ttl.as_millis() as u64),
                run_id: Some(run_id),
                node: plumb_record::host::hostname(),
                pid: Some(std::process::id()),
            },
            ttl,
        })
    }

    /// How long to wait between two asks while waiting: often when the
    /// run is among the next in line (a slot freed is taken within
    /// [`HEAD_POLL`]), else every [`MAX_POLL`]; never longer than a third
    /// of the TTL, so the place does not expire.
    pub fn poll(&self, s: Option<&LeaseState>) -> Duration {
        let every = match s {
            Some(s) if s.position <= s.slots => HEAD_POLL,
            _ => MAX_POLL,
        };
        (self.ttl / 3).min(every)
    }

    fn path(&self, what: &str) -> String {
        format!(
            "/api/v1/throttles/{}/{what}",
            plumb_http::encode_segment(&self.spec.name)
        )
    }

    /// Asks for a slot, or keeps the run's place in the queue. An error is
    /// a refusal waiting will not cure (the token, a conflicting N).
    pub fn ask(&self) -> Result<Asked> {
        let sent = self
            .client
            .post(&self.path("acquire"))
            .json(&self.req)
            .send();
        match sent {
            Ok(resp) => Ok(Asked::State(resp.json()?)),
            Err(e) if e.is_transient() => Ok(Asked::Away(e.to_string())),
            Err(e) => {
                let why = e
                    .refusal()
                    .map(|r| format!("collector {}", r.why))
                    .unwrap_or_else(|| e.to_string());
                Err(anyhow::anyhow!(
                    "throttle `{}`: the collector did not give a slot: {why}",
                    self.spec.name
                ))
            }
        }
    }

    /// Gives up the run's place in the queue (interrupted while waiting),
    /// so it does not hold up the runs behind it until it expires. Best
    /// effort: a failure is said, and the place expires by itself.
    pub fn leave(&self) {
        let sent = self
            .client
            .post(&self.path("release"))
            .json(&ReleaseRequest {
                holder: self.req.holder.clone(),
            })
            .send();
        if let Err(e) = sent {
            eprintln!(
                "plumb: cannot leave the queue of throttle `{}` ({e}); the place expires by itself within {}",
                self.spec.name,
                display::duration(self.ttl.as_nanos() as i64)
            );
        }
    }

    /// The waiting reason for `s`: "waiting for a slot of throttle `x` (3
    /// held fleet-wide, 2nd in queue)".
    pub fn reason(&self, s: &LeaseState) -> String {
        format!(
            "waiting for a slot of throttle `{}` ({} of {} held fleet-wide, {} in queue)",
            self.spec.name,
            s.holders,
            s.slots,
            plumb_model::throttle::ordinal(s.position.max(1))
        )
    }

    /// Holds the granted lease: renews it on a thread until dropped, then
    /// releases it.
    pub fn hold(self) -> HeldLease {
        let (stop, stopped) = mpsc::channel::<()>();
        let every = self.ttl / 3;
        let thread = std::thread::Builder::new()
            .name("throttle-lease".into())
            .spawn(move || {
                let mut warned = false;
                // Until the holder drops the sender.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    let renewed = self
                        .client
                        .post(&self.path("renew"))
                        .json(&RenewRequest {
                            holder: self.req.holder.clone(),
                            ttl_ms: self.req.ttl_ms,
                        })
                        .send();
                    if let Err(e) = renewed
                        && !warned
                    {
                        warned = true;
                        eprintln!(
                            "plumb: cannot renew the lease on throttle `{}` ({e}); the command keeps running, but its slot may go to another run once the lease ({}) expires",
                            self.spec.name,
                            display::duration(self.ttl.as_nanos() as i64)
                        );
                    }
                }
                let released = self
                    .client
                    .post(&self.path("release"))
                    .json(&ReleaseRequest {
                        holder: self.req.holder.clone(),
                    })
                    .send();
                if let Err(e) = released {
                    eprintln!(
                        "plumb: cannot release the lease on throttle `{}` ({e}); it expires by itself within {}",
                        self.spec.name,
                        display::duration(self.ttl.as_nanos() as i64)
                    );
                }
            })
            .ok();
        HeldLease {
            stop: Some(stop),
            thread,
        }
    }
}

/// A lease being renewed; dropping it releases the lease (and waits for
/// the release to be answered, at most one request timeout).
#[derive(Debug)]
pub struct HeldLease {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
