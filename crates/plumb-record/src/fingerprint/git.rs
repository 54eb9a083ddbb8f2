//! The git state of the repository containing the working directory.
//!
//! Finding the repository is done here (walking up to a `.git`), so a
//! directory outside any repository costs a few `stat`s and no process.
//! Commit, branch and remote come from `git` itself and are cached by what
//! they depend on (HEAD, the ref it names, the index and the config); the
//! dirty flag is asked of `git status` on every run, since editing a file
//! changes no key, and the diff's hash is cached by the status output and
//! the dirty files' content keys.

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

fn identity(root: &Path, git_dir: &Path) -> Identity {
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
    Identity {
        commit,
        branch,
        remote,
    }
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
/// when git cannot read it). Also returns whether commit, branch and remote
/// came from the cache.
pub(crate) fn git_state(cwd: &Path, cache: &Cache) -> (Option<GitState>, bool) {
    let Some((root, git_dir)) = discover(cwd) else {
        return (None, false);
    };
    // Dirtiness first: if git cannot read the repository at all (not
    // installed, a repository owned by someone else), there is no state.
    let mut status = git(&root);
    status.args(["status", "--porcelain", "-z", "--untracked-files=no"]);
    let Some(status) = git_stdout(status) else {
        return (None, false);
    };
    let key = identity_key(&git_dir);
    let cached = key.as_deref().and_then(|k| cache.get::<Identity>("git", k));
    let hit = cached.is_some();
    let id = cached.unwrap_or_else(|| {
        let id = identity(&root, &git_dir);
        if let Some(k) = &key {
            cache.put("git", k, &id);
        }
        id
    });
    let dirty = !status.is_empty();
    let diff_sha256 = if dirty && !id.commit.is_empty() {
        diff_hash(&root, &id.commit, &status, cache)
    } else {
        None
    };
    (
        Some(GitState {
            root: root.display().to_string(),
            commit: id.commit,
            branch: id.branch,
            remote: id.remote,
            dirty,
            diff_sha256,
        }),
        hit,
    )
}

/// SHA-256 of `git diff HEAD`, cached by the commit, the status output and
/// the content keys of the files it names.
fn diff_hash(root: &Path, commit: &str, status: &[u8], cache: &Cache) -> Option<String> {
    let mut key = format!("{}\0{commit}\0", root.display());
    for entry in status.split(|&b| b == 0).filter(|e| !e.is_empty()) {
        // `XY path`; a rename's original path follows as its own entry.
        let path = if entry.len() > 3 && entry[2] == b' ' {
            &entry[3..]
        } else {
            entry
        };
        let path = String::from_utf8_lossy(path);
        key.push_str(&String::from_utf8_lossy(entry));
        key.push('\0');
        key.push_str(&format!("{:?}\0", stat_key(&root.join(&*path))));
    }
    if let Some(h) = cache.get::<String>("gitdiff", &key) {
        return Some(h);
    }
    let mut diff = git(root);
    diff.args(["diff", "HEAD", "--binary", "--no-ext-diff", "--no-color"]);
    let out = git_stdout(diff)?;
    let h = plumb_model::hex(&Sha256::digest(&out));
    cache.put("gitdiff", &key, &h);
    Some(h)
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
