//! The software fingerprint of a run, captured cheaply and cached by content
//! key.
//!
//! [`Capture::start`] returns at once; the work happens on two threads of
//! its own, so the child's start is never delayed. One samples the child's
//! `/proc/PID/maps` while it runs; the other describes
//! the machine, hashes the executable, lists the Python packages, runs the
//! tool version commands and reads the git state, each through a persistent
//! cache under `cache_dir` keyed by what the answer depends on, so that an
//! unchanged environment costs a few file reads and `stat`s and starts no
//! process at all.
//! [`Capture::finish`] joins both after the child has exited.
//!
//! ```no_run
//! use plumb_record::fingerprint::{Capture, CaptureOptions};
//! let opts = CaptureOptions {
//!     cache_dir: "/tmp/plumb-cache".into(),
//!     argv: vec!["python3".into(), "-c".into(), "pass".into()],
//!     cwd: std::env::current_dir().unwrap(),
//!     ..Default::default()
//! };
//! let mut child = std::process::Command::new("python3").args(["-c", "pass"]).spawn().unwrap();
//! let capture = Capture::start(&opts, child.id());
//! child.wait().unwrap();
//! let (hash, fingerprint) = capture.finish();
//! assert_eq!(hash, fingerprint.content_hash());
//! ```

mod cache;
mod git;
mod libraries;
mod program;
mod python;
mod system;

use plumb_model::Fingerprint;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;

use cache::Cache;

/// What the fingerprint capture needs to know about the run.
#[derive(Debug, Clone, Default)]
pub struct CaptureOptions {
    /// Directory of the persistent cache (created if missing).
    pub cache_dir: PathBuf,
    /// The child's command line.
    pub argv: Vec<OsString>,
    /// The child's working directory.
    pub cwd: PathBuf,
    /// The child's environment (empty: plumb's own, which it inherits).
    pub env: Vec<(OsString, OsString)>,
    /// A Python interpreter to fingerprint even when the command is not
    /// obviously Python (`PLUMB_PYTHON`).
    pub python: Option<PathBuf>,
    /// Extra tools: name -> command run through `sh -c`; the first line of
    /// its output is the version.
    pub tools: BTreeMap<String, String>,
}

/// What a capture had to do, as opposed to what it found in its cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Samples of `/proc/PID/maps` taken while the child ran.
    pub map_samples: u32,
    /// Whether the executable was hashed (not found in the cache).
    pub executable_hashed: bool,
    /// Whether the Python interpreter was run to list its packages.
    pub python_scanned: bool,
    /// Tool version commands actually run.
    pub tools_run: u32,
    /// Whether commit, branch and remote came from the cache.
    pub git_cache_hit: bool,
    /// Whether `git status` had to be run because a tracked file's `stat`
    /// data changed since the last run (or there was none).
    pub git_status_run: bool,
}

/// A fingerprint capture running beside the child.
#[derive(Debug)]
pub struct Capture {
    stop_sampling: mpsc::Sender<()>,
    sampler: Option<JoinHandle<libraries::Samples>>,
    worker: Option<JoinHandle<(Fingerprint, CaptureStats)>>,
}

impl Capture {
    /// Starts capturing for the child `child_pid`; returns at once.
    pub fn start(opts: &CaptureOptions, child_pid: u32) -> Capture {
        let (stop_sampling, stop_rx) = mpsc::channel();
        let sampler = std::thread::Builder::new()
            .name("plumb-maps".into())
            .spawn(move || libraries::sample_until(child_pid, stop_rx))
            .map_err(|error| tracing::warn!(%error, "cannot start library sampling"))
            .ok();
        let opts = opts.clone();
        let worker = std::thread::Builder::new()
            .name("plumb-fingerprint".into())
            .spawn(move || describe(&opts))
            .map_err(|error| tracing::warn!(%error, "cannot start fingerprint capture"))
            .ok();
        Capture {
            stop_sampling,
            sampler,
            worker,
        }
    }

    /// Waits for the capture to complete (call after the child exited) and
    /// returns the fingerprint's content hash and the fingerprint.
    pub fn finish(self) -> (String, Fingerprint) {
        let (hash, fingerprint, _) = self.finish_with_stats();
        (hash, fingerprint)
    }

    /// Like [`Capture::finish`], also saying what had to be computed rather
    /// than read from the cache.
    pub fn finish_with_stats(mut self) -> (String, Fingerprint, CaptureStats) {
        let _ = self.stop_sampling.send(());
        let samples = self
            .sampler
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let (mut fingerprint, mut stats) = match self.worker.take().map(JoinHandle::join) {
            Some(Ok(done)) => done,
            Some(Err(_)) => {
                tracing::warn!("fingerprint capture failed; recording a partial fingerprint");
                Default::default()
            }
            None => Default::default(),
        };
        stats.map_samples = samples.count;
        fingerprint.libraries = libraries::libraries(&samples.paths);
        tracing::debug!(?stats, "fingerprint captured");
        (fingerprint.content_hash(), fingerprint, stats)
    }
}

/// Everything but the libraries.
fn describe(opts: &CaptureOptions) -> (Fingerprint, CaptureStats) {
    let cache = Cache::new(&opts.cache_dir);
    let mut stats = CaptureStats::default();
    let mut fp = Fingerprint {
        os: system::os_info(),
        cpu_model: system::cpu_model(),
        cpu_count: system::cpu_count(),
        memory_bytes: system::memory_bytes(),
        libc: system::libc_version(),
        ..Default::default()
    };
    let path = program::path_var(&opts.env);
    if let Some(exe) = opts
        .argv
        .first()
        .and_then(|p| program::resolve(p, &opts.cwd, path.as_deref()))
    {
        let (record, hashed) = program::executable_record(&exe, &cache);
        fp.executable = Some(record);
        stats.executable_hashed = hashed;
    }
    if let Some(interp) = python::interpreter(opts) {
        let (env, scanned) = python::python_env(&interp, opts, &cache);
        fp.python = env;
        stats.python_scanned = scanned;
    }
    let (tools, runs) = program::tool_versions(&opts.tools, &opts.env, &opts.cwd, &cache);
    fp.tools = tools;
    stats.tools_run = runs;
    let (git, work) = git::git_state(&opts.cwd, &cache);
    fp.git = git;
    stats.git_cache_hit = work.identity_cached;
    stats.git_status_run = work.status_run;
    (fp, stats)
}

/// Job-scheduler ids found in the environment: `slurm.job_id`,
/// `slurm.array_task_id`, `condor.job_id`, `pbs.job_id`, `lsf.job_id`,
/// `k8s.pod`, ...
pub fn scheduler_ids(env: &[(OsString, OsString)]) -> BTreeMap<String, String> {
    const DIRECT: &[(&str, &str)] = &[
        ("SLURM_JOB_ID", "slurm.job_id"),
        ("SLURM_ARRAY_JOB_ID", "slurm.array_job_id"),
        ("SLURM_ARRAY_TASK_ID", "slurm.array_task_id"),
        ("SLURM_PROCID", "slurm.procid"),
        ("SLURM_STEP_ID", "slurm.step_id"),
        ("SLURM_CLUSTER_NAME", "slurm.cluster"),
        ("PBS_JOBID", "pbs.job_id"),
        ("PBS_ARRAYID", "pbs.array_id"),
        ("PBS_ARRAY_INDEX", "pbs.array_index"),
        ("LSB_JOBID", "lsf.job_id"),
        ("LSB_JOBINDEX", "lsf.job_index"),
        ("POD_NAME", "k8s.pod"),
        ("POD_NAMESPACE", "k8s.namespace"),
    ];
    let get = |name: &str| {
        env.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_string_lossy().into_owned())
            .filter(|v| !v.is_empty())
    };
    let mut ids = BTreeMap::new();
    for (var, key) in DIRECT {
        if let Some(v) = get(var) {
            ids.insert(key.to_string(), v);
        }
    }
    // Inside a pod, the host name is the pod name unless POD_NAME says.
    if get("KUBERNETES_SERVICE_HOST").is_some()
        && !ids.contains_key("k8s.pod")
        && let Some(h) = get("HOSTNAME")
    {
        ids.insert("k8s.pod".into(), h);
    }
    // HTCondor writes the job's ClassAd to a file and names it here.
    let ad = get("_CONDOR_JOB_AD").and_then(|p| std::fs::read_to_string(p).ok());
    if let Some(ad) = ad {
        ids.extend(condor_ids(&ad));
    }
    if !ids.contains_key("condor.job_id")
        && let Some(id) = get("CONDOR_ID")
    {
        ids.insert("condor.job_id".into(), id);
    }
    ids
}

/// `ClusterId`, `ProcId` and `GlobalJobId` of an HTCondor job ClassAd.
fn condor_ids(ad: &str) -> BTreeMap<String, String> {
    let mut ids = BTreeMap::new();
    for line in ad.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').to_string();
        match k.trim() {
            "ClusterId" => ids.insert("condor.cluster_id".into(), v),
            "ProcId" => ids.insert("condor.proc_id".into(), v),
            "GlobalJobId" => ids.insert("condor.global_job_id".into(), v),
            _ => None,
        };
    }
    if let (Some(c), Some(p)) = (ids.get("condor.cluster_id"), ids.get("condor.proc_id")) {
        let id = format!("{c}.{p}");
        ids.insert("condor.job_id".into(), id);
    }
    ids
}

/// The container id when running inside a container (Docker, containerd,
/// CRI-O, Podman, Kubernetes), from `/proc/self/cgroup` and
/// `/proc/self/mountinfo`; `None` on a plain host.
pub fn container_id() -> Option<String> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    container_id_from(&cgroup, &mountinfo)
}

/// The first 64-hex-digit run in `s` that stands alone (not part of a
/// longer hex run).
fn hex64(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_hexdigit() && !b[i].is_ascii_uppercase() {
            let run = b[i..]
                .iter()
                .take_while(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
                .count();
            if run == 64 {
                return Some(&s[i..i + 64]);
            }
            i += run.max(1);
        } else {
            i += 1;
        }
    }
    None
}

fn container_id_from(cgroup: &str, mountinfo: &str) -> Option<String> {
    // cgroup v1 `12:memory:/docker/<id>`, systemd `docker-<id>.scope`,
    // `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`,
    // `/kubepods/burstable/pod<uid>/<id>`: the id is a 64-hex segment.
    for line in cgroup.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        if let Some(id) = path.rsplit('/').find_map(hex64) {
            return Some(id.to_string());
        }
    }
    // With a private cgroup namespace (cgroup v2) the path is `/`; Docker
    // and Podman still bind-mount files from the container's directory.
    for line in mountinfo.lines() {
        for marker in ["/containers/", "/overlay-containers/", "/sandboxes/"] {
            if let Some(i) = line.find(marker)
                && let Some(id) = hex64(&line[i + marker.len()..])
                && line[i + marker.len()..].starts_with(id)
            {
                return Some(id.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    #[test]
    fn scheduler_ids_from_environment() {
        let ids = scheduler_ids(&env(&[
            ("SLURM_JOB_ID", "4242"),
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_PROCID", "0"),
            ("PBS_JOBID", "99.pbs01"),
            ("LSB_JOBID", "123"),
            ("PATH", "/bin"),
        ]));
        assert_eq!(ids["slurm.job_id"], "4242");
        assert_eq!(ids["slurm.array_task_id"], "7");
        assert_eq!(ids["slurm.procid"], "0");
        assert_eq!(ids["pbs.job_id"], "99.pbs01");
        assert_eq!(ids["lsf.job_id"], "123");
        assert_eq!(ids.len(), 5);
        assert!(scheduler_ids(&env(&[("HOME", "/root")])).is_empty());
    }

    #[test]
    fn kubernetes_pod_from_hostname_or_pod_name() {
        let ids = scheduler_ids(&env(&[
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
            ("HOSTNAME", "train-7f9c-abcde"),
            ("POD_NAMESPACE", "ml"),
        ]));
        assert_eq!(ids["k8s.pod"], "train-7f9c-abcde");
        assert_eq!(ids["k8s.namespace"], "ml");
        let ids = scheduler_ids(&env(&[("HOSTNAME", "laptop")]));
        assert!(ids.is_empty(), "a host name alone is not a pod: {ids:?}");
    }

    #[test]
    fn condor_job_ad_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let ad = dir.path().join(".job.ad");
        std::fs::write(&ad, "ClusterId = 1234\nProcId = 5\nGlobalJobId = \"submit.example#1234.5#1700000000\"\nOwner = \"ann\"\n").unwrap();
        let ids = scheduler_ids(&env(&[("_CONDOR_JOB_AD", ad.to_str().unwrap())]));
        assert_eq!(ids["condor.job_id"], "1234.5");
        assert_eq!(ids["condor.cluster_id"], "1234");
        assert_eq!(
            ids["condor.global_job_id"],
            "submit.example#1234.5#1700000000"
        );
        let ids = scheduler_ids(&env(&[
            ("_CONDOR_JOB_AD", "/nonexistent/ad"),
            ("CONDOR_ID", "77.0"),
        ]));
        assert_eq!(ids["condor.job_id"], "77.0");
    }

    #[test]
    fn container_ids_from_cgroup_and_mountinfo() {
        let id = "3f4e2b1a9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
        let cases = [
            format!("12:memory:/docker/{id}\n0::/\n"),
            format!("0::/system.slice/docker-{id}.scope\n"),
            format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-{id}.scope\n"
            ),
            format!("11:cpu:/kubepods/besteffort/pod0a1b2c3d-1111-2222-3333-444455556666/{id}\n"),
            format!("0::/machine.slice/libpod-{id}.scope/container\n"),
        ];
        for cgroup in &cases {
            assert_eq!(
                container_id_from(cgroup, "").as_deref(),
                Some(id),
                "{cgroup}"
            );
        }
        let mountinfo = format!(
            "1 0 0:50 / / rw - overlay overlay rw\n612 600 254:1 /var/lib/docker/containers/{id}/resolv.conf /etc/resolv.conf rw - ext4 /dev/vda1 rw\n"
        );
        assert_eq!(container_id_from("0::/\n", &mountinfo).as_deref(), Some(id));
        // A plain host, and this sandbox's own kind of cgroup path.
        assert_eq!(
            container_id_from(
                "0::/user.slice/user-1000.slice/session-2.scope\n",
                "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
            ),
            None
        );
        assert_eq!(
            container_id_from(
                "4:memory:/process_api/d17c3854c6b342cc5f7023c3bf90ce58\n",
                ""
            ),
            None
        );
        // Whatever this machine is, asking does not fail.
        let _ = container_id();
    }
}
