//! The git state of the repository containing the working directory.
//!
//! Finding the repository is done here (walking up to a `.git`), so a
//! directory outside any repository costs a few `stat`s and no process.
//! Commit, branch, remote and the list of tracked files come from `git`
//! itself and are cached by what they depend on (HEAD, the ref it names,
//! the index and the config).
//!
//! Dirtiness is checked on every run, the way git checks it: by the `stat`
//! data (modification and change times, inode, size, mode) of every tracked
//! file. The dirty flag and the diff's hash are cached under a key made of
//! all that data, so when no tracked file changed since the last run no git
//! process is started; when any did, `git status --porcelain
//! --untracked-files=no` and `git diff HEAD` decide, and their answer is
//! cached under the new key.

use plumb_model::GitState;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::cache::{Cache, stat_key};
use super::program::run_limited;

/// How long one git command may take.
const GIT_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Identity {
    commit: String,
    branch: Option<String>,
    remote: Option<String>,
    /// Tracked paths, relative to the work tree's top.
    tracked: Vec<String>,
    /// Whether any tracked path is a submodule, whose dirtiness `stat`
    /// cannot tell.
    submodules: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Dirtiness {
    dirty: bool,
    diff_sha256: Option<String>,
}

/// What git found or was spared.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GitWork {
    /// Commit, branch, remote and tracked files came from the cache.
    pub(crate) identity_cached: bool,
    /// `git status` had to be run.
    pub(crate) status_run: bool,
}

/// The work tree's top directory and its git directory, found by walking
/// up from `cwd`.
fn discover(cwd: &Path) -> Option<(PathBuf, PathBuf)> {
    for dir in cwd.ancestors() {
        let dot_git = dir.join(".git");
        let Ok(meta) = std::fs::metadata(&dot_git) else {
            continue;
        };
        if meta.is_dir() {
            return Some((dir.to_path_buf(), dot_git));
        }
        // Worktrees and submodules: `.git` is a file `gitdir: <path>`.
        let text = std::fs::read_to_string(&dot_git).ok()?;
        let target = text.strip_prefix("gitdir:")?.trim();
        return Some((dir.to_path_buf(), dir.join(target)));
    }
    None
}

fn git(root: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("--no-optional-locks")
        .arg("-C")
        .arg(root)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE");
    cmd
}

fn git_stdout(cmd: Command) -> Option<Vec<u8>> {
    let out = run_limited(cmd, GIT_LIMIT)?;
    out.status.success().then_some(out.stdout)
}

/// What commit, branch and remote depend on.
fn identity_key(git_dir: &Path) -> Option<String> {
    let common = match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(rel) => git_dir.join(rel.trim()),
        Err(_) => git_dir.to_path_buf(),
    };
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let target = match head.trim().strip_prefix("ref: ") {
        Some(name) => std::fs::read_to_string(common.join(name)).unwrap_or_else(|_| {
            // A packed ref: the packed-refs file's content key stands for it.
            format!("packed {:?}", stat_key(&common.join("packed-refs")))
        }),
        None => String::new(),
    };
    Some(format!(
        "{}\0{}\0{}\0{:?}\0{:?}",
        git_dir.display(),
        head.trim(),
        target.trim(),
        stat_key(&git_dir.join("index")),
        stat_key(&common.join("config")),
    ))
}

fn identity(root: &Path, git_dir: &Path) -> Option<Identity> {
    let mut rev = git(root);
    rev.args(["rev-parse", "--verify", "-q", "HEAD"]);
    let commit = git_stdout(rev)
        .map(|o| String::from_utf8_lossy(&o).trim().to_string())
        .unwrap_or_default();
    let branch = std::fs::read_to_string(git_dir.join("HEAD"))
        .ok()
        .and_then(|h| {
            h.trim()
                .strip_prefix("ref: refs/heads/")
                .map(str::to_string)
        });
    let mut remote = git(root);
    remote.args(["config", "--get", "remote.origin.url"]);
    let remote = git_stdout(remote)
        .map(|o| strip_credentials(String::from_utf8_lossy(&o).trim()))
        .filter(|r| !r.is_empty());
    let mut ls = git(root);
    ls.args(["ls-files", "-z", "--stage"]);
    let mut tracked = Vec::new();
    let mut submodules = false;
    for entry in git_stdout(ls)?.split(|&b| b == 0).filter(|e| !e.is_empty()) {
        // `mode object stage\tpath`
        let entry = String::from_utf8_lossy(entry);
        let Some((meta, path)) = entry.split_once('\t') else {
            continue;
        };
        submodules |= meta.starts_with("160000");
        tracked.push(path.to_string());
    }
    tracked.dedup();
    Some(Identity {
        commit,
        branch,
        remote,
        tracked,
        submodules,
    })
}

/// The URL without user name and password (`https://TOKEN@host/x` is
/// common), except the plain user of an ssh URL, which is no secret.
pub(crate) fn strip_credentials(url: &str) -> String {
    let Some(i) = url.find("://") else {
        return url.to_string();
    };
    let (scheme, rest) = (&url[..i], &url[i + 3..]);
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    if scheme.contains("ssh") && !userinfo.contains(':') {
        return url.to_string();
    }
    format!(
        "{scheme}://{}{}",
        &authority[at + 1..],
        &rest[authority_end..]
    )
}

/// Git state of the repository containing `cwd`, or `None` outside one (or
/// when git cannot read it), and what it took.
pub(crate) fn git_state(cwd: &Path, cache: &Cache) -> (Option<GitState>, GitWork) {
    let mut work = GitWork::default();
    let Some((root, git_dir)) = discover(cwd) else {
        return (None, work);
    };
    let key = identity_key(&git_dir);
    let cached = key.as_deref().and_then(|k| cache.get::<Identity>("git", k));
    work.identity_cached = cached.is_some();
    let id = match cached {
        Some(id) => id,
        None => {
            // If git cannot read the repository at all (not installed, a
            // repository owned by someone else), there is no state.
            let Some(id) = identity(&root, &git_dir) else {
                return (None, work);
            };
            if let Some(k) = &key {
                cache.put("git", k, &id);
            }
            id
        }
    };
    let worktree = match (&key, id.submodules) {
        (Some(k), false) => Some(worktree_key(k, &root, &id.tracked)),
        _ => None,
    };
    let dirtiness = match worktree
        .as_deref()
        .and_then(|w| cache.get::<Dirtiness>("gitdirty", w))
    {
        Some(d) => d,
        None => {
            work.status_run = true;
            let Some(d) = dirtiness(&root, &id.commit) else {
                return (None, work);
            };
            if let Some(w) = &worktree {
                cache.put("gitdirty", w, &d);
            }
            d
        }
    };
    (
        Some(GitState {
            root: root.display().to_string(),
            commit: id.commit,
            branch: id.branch,
            remote: id.remote,
            dirty: dirtiness.dirty,
            diff_sha256: dirtiness.diff_sha256,
        }),
        work,
    )
}

/// A hash of the identity key and the `stat` data of every tracked file:
/// equal keys mean no tracked file was touched.
fn worktree_key(identity_key: &str, root: &Path, tracked: &[String]) -> String {
    use std::os::unix::fs::MetadataExt;
    let mut h = Sha256::new();
    h.update(identity_key.as_bytes());
    for path in tracked {
        h.update([0]);
        h.update(path.as_bytes());
        match std::fs::symlink_metadata(root.join(path)) {
            Ok(m) => h.update(
                format!(
                    "\0{}.{}:{}.{}:{}:{}:{:o}",
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime(),
                    m.ctime_nsec(),
                    m.ino(),
                    m.size(),
                    m.mode()
                )
                .as_bytes(),
            ),
            Err(_) => h.update(b"\0missing"),
        }
    }
    plumb_model::hex(&h.finalize())
}

/// Asks git: `git status` for the flag, `git diff HEAD` for the hash.
fn dirtiness(root: &Path, commit: &str) -> Option<Dirtiness> {
    let mut status = git(root);
    status.args(["status", "--porcelain", "-z", "--untracked-files=no"]);
    let dirty = !git_stdout(status)?.is_empty();
    let diff_sha256 = if dirty && !commit.is_empty() {
        let mut diff = git(root);
        diff.args(["diff", "HEAD", "--binary", "--no-ext-diff", "--no-color"]);
        git_stdout(diff).map(|out| plumb_model::hex(&Sha256::digest(&out)))
    } else {
        None
    };
    Some(Dirtiness { dirty, diff_sha256 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_stripped_from_remotes() {
        assert_eq!(
            strip_credentials("https://user:tok@github.com/a/b.git"),
            "https://github.com/a/b.git"
        );
        assert_eq!(
            strip_credentials("https://ghp_abc@github.com/a/b"),
            "https://github.com/a/b"
        );
        assert_eq!(
            strip_credentials("https://github.com/a/b"),
            "https://github.com/a/b"
        );
        assert_eq!(
            strip_credentials("ssh://git@host/a.git"),
            "ssh://git@host/a.git"
        );
        assert_eq!(
            strip_credentials("ssh://git:pw@host/a.git"),
            "ssh://host/a.git"
        );
        assert_eq!(
            strip_credentials("git@github.com:a/b.git"),
            "git@github.com:a/b.git"
        );
    }

    #[test]
    fn no_repository_means_none() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        // /proc is never inside a repository.
        assert_eq!(git_state(Path::new("/proc/self"), &cache).0, None);
    }
}
