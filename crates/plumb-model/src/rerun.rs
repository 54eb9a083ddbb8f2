//! Reruns: doing again what a recorded run did (`plumb rerun RUN --here`
//! on this host, `--on-node` through the collector on the run's own node).
//!
//! [`environment`] is the one rule for the environment of a rerun, shared
//! by the CLI and the agent. [`RerunOrder`] is what the collector hands the
//! node's agent (in `StackRequest.rerun`), [`RerunOutcome`] what the agent
//! answers, [`RerunQuery`]/[`RerunStarted`] the `POST /api/v1/rerun`
//! exchange between the CLI and the collector.

use crate::{Run, UserInfo, Uuid, is_redacted};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Variables `plumb run` sets for each run itself: never carried over.
pub const PER_RUN: &[&str] = &["PLUMB_RUN_ID", "PLUMB_ATTEMPT", "PLUMB_CHECKPOINT_DIR"];

/// The tag linking a rerun to the run it repeats.
pub const RERUN_OF: &str = "rerun_of";

/// A rerun's environment and what was done to it, in words.
pub type Environment = (BTreeMap<String, String>, Vec<String>);

/// The environment to run with: the recorded one, with plumb's own
/// settings (`PLUMB_*`) taken from `current`, and each value plumb
/// redacted (never stored) taken from `current` or from `ask`. Returns the
/// environment and what was done to it, in words; or, as the error, the
/// names of the redacted variables nobody gave a value for.
pub fn environment(
    recorded: &BTreeMap<String, String>,
    current: &BTreeMap<String, String>,
    ask: &mut dyn FnMut(&str) -> Option<String>,
) -> Result<Environment, Vec<String>> {
    let mut env = BTreeMap::new();
    let mut notes = Vec::new();
    let mut missing = Vec::new();
    for (k, v) in recorded {
        if k.starts_with("PLUMB_") {
            continue;
        }
        if k == "OTEL_RESOURCE_ATTRIBUTES" {
            // plumb adds the run's id; the new run adds its own.
            let kept: Vec<&str> = v
                .split(',')
                .filter(|p| !p.trim().starts_with("plumb.run.id="))
                .collect();
            if !kept.is_empty() {
                env.insert(k.clone(), kept.join(","));
            }
            continue;
        }
        if is_redacted(v) {
            if let Some(now) = current.get(k) {
                notes.push(format!(
                    "{k}: redacted in the record, taken from the current environment"
                ));
                env.insert(k.clone(), now.clone());
            } else if let Some(given) = ask(k) {
                notes.push(format!("{k}: redacted in the record, as given"));
                env.insert(k.clone(), given);
            } else {
                missing.push(k.clone());
            }
            continue;
        }
        env.insert(k.clone(), v.clone());
    }
    if !missing.is_empty() {
        return Err(missing);
    }
    for (k, v) in current {
        if k.starts_with("PLUMB_") && !PER_RUN.contains(&k.as_str()) {
            env.insert(k.clone(), v.clone());
        }
    }
    Ok((env, notes))
}

/// The arguments of `plumb run` that repeat `order` (after the
/// executable): its name, tags (with [`RERUN_OF`] set to the original's
/// id), files, then `--` and its command line; with `run_id` (the new
/// run's id, when chosen beforehand) as `--run-id`.
pub fn run_args(order: &RerunOrder, run_id: Option<Uuid>) -> Vec<String> {
    let mut a = vec!["run".to_string()];
    if let Some(id) = run_id {
        a.push("--run-id".into());
        a.push(id.to_string());
    }
    a.push("--name".into());
    a.push(order.name.clone());
    for (k, v) in &order.tags {
        if k != RERUN_OF {
            a.push("--tag".into());
            a.push(format!("{k}={v}"));
        }
    }
    a.push("--tag".into());
    a.push(format!("{RERUN_OF}={}", order.original));
    for (flag, files) in [
        ("--input", &order.inputs),
        ("--output", &order.outputs),
        ("--config", &order.config_files),
    ] {
        for f in files {
            a.push(flag.into());
            a.push(f.clone());
        }
    }
    a.push("--".into());
    a.extend(order.argv.iter().cloned());
    a
}

/// `POST /api/v1/rerun`: what `plumb rerun RUN --on-node` asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RerunQuery {
    /// The run to do again (id, unique prefix, `last`, `last~N`).
    pub run: String,
    /// The node whose agent runs it (default: the node named like the
    /// run's host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// How long to wait for the agent to start it, milliseconds.
    pub wait_ms: u64,
}

/// What a rerun repeats of a recorded run, and what the collector hands
/// a node's agent for `--on-node`: redacted values stay redacted (the agent
/// takes them from its own environment or refuses, naming them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RerunOrder {
    /// The run done again.
    pub original: Uuid,
    /// The new run's id, chosen by the collector so the asker can wait for
    /// it (nil when the rerun picks its own).
    pub run_id: Uuid,
    /// The run's name.
    pub name: String,
    /// Its tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Its command line.
    pub argv: Vec<String>,
    /// Its working directory.
    pub cwd: String,
    /// Its environment as recorded (secrets redacted).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The user it ran as.
    pub user: UserInfo,
    /// `--input` files.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// `--output` files.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// `--config` files.
    #[serde(default)]
    pub config_files: Vec<String>,
}

impl RerunOrder {
    /// What repeats `run`, as new run `run_id`.
    pub fn of(run: &Run, run_id: Uuid) -> RerunOrder {
        let paths = |files: &[crate::FileRecord]| files.iter().map(|f| f.path.clone()).collect();
        RerunOrder {
            original: run.id,
            run_id,
            name: run.name.clone(),
            tags: run.tags.clone(),
            argv: run.argv.clone(),
            cwd: run.cwd.clone(),
            env: run.env.clone(),
            user: run.user.clone(),
            inputs: paths(&run.inputs),
            outputs: paths(&run.outputs),
            config_files: paths(&run.config_files),
        }
    }
}

/// A node's answer to a [`RerunOrder`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum RerunOutcome {
    /// `plumb run` was started.
    Started {
        /// Its process id on the node.
        pid: u32,
    },
    /// The agent would not or could not start it.
    Refused {
        /// Why, in words (the user, the directory, the variables missing).
        why: String,
    },
}

/// The answer of `POST /api/v1/rerun`: the rerun was started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RerunStarted {
    /// The run done again.
    pub original: Uuid,
    /// The node it runs on.
    pub node: String,
    /// The new run's id (it reaches the collector as the node ships it).
    pub run_id: Uuid,
    /// `plumb run`'s process id on the node.
    pub pid: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_recorded_environment_with_plumbs_settings_and_secrets_from_now() {
        let secret = format!("{}x]", crate::REDACTED_PREFIX);
        let recorded = map(&[
            ("PATH", "/old/bin"),
            ("API_KEY", &secret),
            ("PLUMB_RUN_ID", "old"),
            ("PLUMB_HOME", "/old/home"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=x,plumb.run.id=old",
            ),
        ]);
        let current = map(&[
            ("PATH", "/new/bin"),
            ("API_KEY", "s3cret"),
            ("PLUMB_HOME", "/new/home"),
            ("PLUMB_RUN_ID", "mine"),
        ]);
        let (env, notes) = environment(&recorded, &current, &mut |_| None).unwrap();
        assert_eq!(env["PATH"], "/old/bin", "the record's, not today's");
        assert_eq!(env["API_KEY"], "s3cret");
        assert_eq!(env["PLUMB_HOME"], "/new/home");
        assert!(!env.contains_key("PLUMB_RUN_ID"));
        assert_eq!(env["OTEL_RESOURCE_ATTRIBUTES"], "service.name=x");
        assert_eq!(notes.len(), 1);

        let missing = environment(&recorded, &map(&[]), &mut |_| None).unwrap_err();
        assert_eq!(missing, vec!["API_KEY".to_string()]);
        let (env, _) =
            environment(&recorded, &map(&[]), &mut |k| Some(format!("typed-{k}"))).unwrap();
        assert_eq!(env["API_KEY"], "typed-API_KEY");
    }

    #[test]
    fn run_args_repeat_name_tags_files_and_command_and_link_the_original() {
        let mut run = Run::new(crate::new_id(), "job".into(), crate::Timestamp::now());
        run.argv = vec!["python3".into(), "-c".into(), "print(1)".into()];
        run.tags.insert("team".into(), "ml".into());
        run.tags.insert(RERUN_OF.into(), "older".into());
        run.inputs.push(crate::FileRecord {
            path: "in.csv".into(),
            ..Default::default()
        });
        let new = crate::new_id();
        let a = run_args(&RerunOrder::of(&run, new), Some(new));
        let rerun_of = format!("{RERUN_OF}={}", run.id);
        let new_s = new.to_string();
        let expected: Vec<&str> = vec![
            "run", "--run-id", &new_s, "--name", "job", "--tag", "team=ml", "--tag", &rerun_of,
            "--input", "in.csv", "--", "python3", "-c", "print(1)",
        ];
        assert_eq!(a, expected);
    }
}
