//! What happened when a run was told to get out of the way: an eviction
//! warning (a signal to the recorder, or a cloud provider's interruption
//! notice), the warning passed on to the program, and how it ended.

use crate::Timestamp;
use serde::{Deserialize, Serialize};

/// The timings of one eviction, recorded on the evicted [`crate::Run`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eviction {
    /// When the recorder got the warning (UTC).
    pub warned: Timestamp,
    /// Where the warning came from: a signal name (`SIGTERM`) or a cloud
    /// provider (`aws`, `gcp`, `azure`, or the metadata URL polled).
    pub source: String,
    /// What the source said, when it said more than "now": the AWS
    /// instance-action document, the Azure event, the signal's sender pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The warning signal sent to the program (`SIGTERM`, `SIGUSR1`, ...).
    pub signal: String,
    /// How long the program was given before being killed, nanoseconds.
    pub grace_ns: i64,
    /// When the program exited or was killed (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Timestamp>,
    /// Whether the grace period ran out and the program was SIGKILLed.
    #[serde(default)]
    pub grace_expired: bool,
    /// Whether the SIGKILL went to the program's own process group (it had
    /// made one), not only to the program.
    #[serde(default)]
    pub killed_group: bool,
    /// How many processes the warning signal reached: the program and
    /// every descendant of it alive at the time (shell wrappers, workers,
    /// processes that made their own group or session).
    #[serde(default)]
    pub signalled: u32,
    /// How many processes were SIGKILLed when the grace ran out (0 when
    /// everything exited in time).
    #[serde(default)]
    pub killed: u32,
}

impl Eviction {
    /// Nanoseconds from the warning to the program's end, once it ended.
    pub fn response_ns(&self) -> Option<i64> {
        self.ended.map(|e| e.as_nanos() - self.warned.as_nanos())
    }
}

#[cfg(test)]
mod tests {
    use crate::{Eviction, Run, Timestamp};

    #[test]
    fn records_written_before_evictions_existed_still_read() {
        let mut run = Run::new(crate::new_id(), "old".into(), Timestamp::from_nanos(5));
        run.attempt = 2;
        let mut json = serde_json::to_value(&run).unwrap();
        let obj = json.as_object_mut().unwrap();
        assert!(!obj.contains_key("eviction"), "None is not written");
        obj.remove("max_attempts");
        let back: Run = serde_json::from_value(json).unwrap();
        assert_eq!(back.eviction, None);
        assert_eq!(back.attempt, 2);
    }

    #[test]
    fn eviction_round_trips_and_measures_the_response() {
        let mut run = Run::new(crate::new_id(), "e".into(), Timestamp::from_nanos(0));
        run.eviction = Some(Eviction {
            warned: Timestamp::from_nanos(1_000),
            source: "aws".into(),
            detail: Some(r#"{"action":"terminate"}"#.into()),
            signal: "SIGUSR1".into(),
            grace_ns: 30_000_000_000,
            ended: Some(Timestamp::from_nanos(4_000)),
            grace_expired: true,
            killed_group: false,
            signalled: 3,
            killed: 1,
        });
        let back: Run = serde_json::from_str(&serde_json::to_string(&run).unwrap()).unwrap();
        assert_eq!(back, run);
        assert_eq!(back.eviction.unwrap().response_ns(), Some(3_000));
    }
}
