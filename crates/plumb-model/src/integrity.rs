//! Same inputs, different outputs: runs of one name that were given the
//! same data and produced different results (`plumb integrity`).
//!
//! Wrong results without an exception are the hardest failures to notice
//! in distributed code: a node with another library version, a race, a
//! nondeterministic reduction. When runs record their inputs and outputs
//! (`plumb run --input F --output F`), their content hashes say it:
//! [`findings`] groups runs by name and by the content of all their
//! inputs, and reports every group whose runs' outputs are not all equal.
//! Runs that recorded no inputs, or whose inputs or outputs were not
//! hashed, are not compared (nothing can be said about them).

use crate::{FileRecord, Run, Timestamp, Uuid};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One run of a [`Finding`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRef {
    /// The run.
    pub id: Uuid,
    /// Where it ran.
    pub host: String,
    /// When it started.
    pub started: Timestamp,
    /// Its software fingerprint's hash.
    pub fingerprint: Option<String>,
}

/// Runs that produced the same outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Each output path and its content hash (`None`: not produced).
    pub outputs: BTreeMap<String, Option<String>>,
    /// The runs, newest first.
    pub runs: Vec<RunRef>,
}

/// Runs of one name with equal inputs and more than one outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The runs' name.
    pub name: String,
    /// The inputs they share: path -> content hash.
    pub inputs: BTreeMap<String, String>,
    /// The distinct outcomes, most runs first.
    pub outcomes: Vec<Outcome>,
}

fn hashes(files: &[FileRecord]) -> BTreeMap<String, Option<String>> {
    files
        .iter()
        .map(|f| (f.path.clone(), f.sha256.clone()))
        .collect()
}

/// Every group of `runs` (finished ones; any order) with the same name and
/// the same input contents whose outputs differ.
pub fn findings(runs: &[Run]) -> Vec<Finding> {
    type Key = (String, BTreeMap<String, String>);
    let mut groups: BTreeMap<Key, Vec<&Run>> = BTreeMap::new();
    for r in runs {
        if r.inputs.is_empty() || r.outputs.is_empty() || r.ended.is_none() {
            continue;
        }
        // Every input must have been hashed for "the same" to mean it.
        let Some(inputs) = r
            .inputs
            .iter()
            .map(|f| f.sha256.clone().map(|h| (f.path.clone(), h)))
            .collect::<Option<BTreeMap<String, String>>>()
        else {
            continue;
        };
        groups.entry((r.name.clone(), inputs)).or_default().push(r);
    }
    let mut out = Vec::new();
    for ((name, inputs), members) in groups {
        let mut by_outputs: Vec<Outcome> = Vec::new();
        for r in members {
            let outputs = hashes(&r.outputs);
            let run = RunRef {
                id: r.id,
                host: r.host.hostname.clone(),
                started: r.started,
                fingerprint: r.fingerprint.clone(),
            };
            match by_outputs.iter_mut().find(|o| o.outputs == outputs) {
                Some(o) => o.runs.push(run),
                None => by_outputs.push(Outcome {
                    outputs,
                    runs: vec![run],
                }),
            }
        }
        if by_outputs.len() < 2 {
            continue;
        }
        for o in &mut by_outputs {
            o.runs.sort_by_key(|r| std::cmp::Reverse(r.started));
        }
        by_outputs.sort_by_key(|o| std::cmp::Reverse(o.runs.len()));
        out.push(Finding {
            name,
            inputs,
            outcomes: by_outputs,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::new_id;

    fn file(path: &str, hash: &str) -> FileRecord {
        FileRecord {
            path: path.into(),
            sha256: Some(hash.into()),
            ..Default::default()
        }
    }

    fn run(name: &str, input: &str, output: &str, t: i64) -> Run {
        let mut r = Run::new(new_id(), name.into(), Timestamp::from_nanos(t));
        r.ended = Some(Timestamp::from_nanos(t + 1));
        r.inputs = vec![file("in.csv", input)];
        r.outputs = vec![file("out.csv", output)];
        r
    }

    #[test]
    fn equal_inputs_with_different_outputs_are_found_equal_outputs_are_not() {
        let runs = vec![
            run("train", "i1", "o1", 1),
            run("train", "i1", "o1", 2),
            run("train", "i1", "o2", 3),
            // Other inputs: not compared with the above.
            run("train", "i2", "o9", 4),
            // Same inputs and outputs under another name: its own group.
            run("eval", "i1", "o1", 5),
            run("eval", "i1", "o1", 6),
        ];
        let f = findings(&runs);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].name, "train");
        assert_eq!(f[0].inputs["in.csv"], "i1");
        assert_eq!(f[0].outcomes.len(), 2);
        assert_eq!(f[0].outcomes[0].runs.len(), 2);
        assert_eq!(
            f[0].outcomes[1].outputs["out.csv"].as_deref(),
            Some("o2"),
            "the odd one out"
        );
        // Newest first within an outcome.
        assert!(f[0].outcomes[0].runs[0].started > f[0].outcomes[0].runs[1].started);
    }

    #[test]
    fn runs_without_hashed_inputs_or_not_finished_are_not_compared() {
        let mut unhashed = run("x", "i", "o1", 1);
        unhashed.inputs[0].sha256 = None;
        let mut running = run("x", "i", "o2", 2);
        running.ended = None;
        let no_inputs = {
            let mut r = run("x", "i", "o3", 3);
            r.inputs.clear();
            r
        };
        let ok = run("x", "i", "o4", 4);
        assert!(findings(&[unhashed, running, no_inputs, ok]).is_empty());
    }
}
