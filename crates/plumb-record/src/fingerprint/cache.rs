//! The persistent fingerprint cache: one small JSON file per entry, written
//! atomically, so that concurrent recorders never see half an entry and a
//! corrupt file costs one recomputation, never a failure.

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Bumped whenever the layout of an entry changes, so that old entries are
/// simply not found.
const LAYOUT: &str = "fingerprint-v1";

#[derive(Debug, Clone)]
pub(crate) struct Cache {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Entry<T> {
    key: String,
    value: T,
}

impl Cache {
    pub(crate) fn new(root: &Path) -> Cache {
        Cache {
            dir: root.join(LAYOUT),
        }
    }

    fn file(&self, kind: &str, key: &str) -> PathBuf {
        let name = plumb_model::sha256_hex(key.as_bytes());
        self.dir.join(format!("{kind}-{}.json", &name[..20]))
    }

    /// The value stored under `key`, if there is a readable one. The full key
    /// is stored in the entry and compared, so a hash collision or a file
    /// from another layout reads as a miss.
    pub(crate) fn get<T: DeserializeOwned>(&self, kind: &str, key: &str) -> Option<T> {
        let path = self.file(kind, key);
        let bytes = std::fs::read(&path).ok()?;
        match serde_json::from_slice::<Entry<T>>(&bytes) {
            Ok(entry) if entry.key == key => Some(entry.value),
            Ok(_) => None,
            Err(error) => {
                tracing::debug!(path = %path.display(), %error, "ignoring corrupt fingerprint cache entry");
                None
            }
        }
    }

    /// Stores `value` under `key`: written to a temporary file, then renamed
    /// over the entry. Failures are logged and otherwise ignored: the cache
    /// only saves time.
    pub(crate) fn put<T: Serialize>(&self, kind: &str, key: &str, value: &T) {
        if let Err(error) = self.try_put(kind, key, value) {
            tracing::debug!(dir = %self.dir.display(), %error, "cannot write fingerprint cache entry");
        }
    }

    fn try_put<T: Serialize>(&self, kind: &str, key: &str, value: &T) -> std::io::Result<()> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        create_private_dir(&self.dir)?;
        let path = self.file(kind, key);
        let tmp = self.dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let json = serde_json::to_vec(&Entry {
            key: key.to_string(),
            value,
        })
        .map_err(std::io::Error::other)?;
        let result = (|| {
            let mut f = {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)?
            };
            f.write_all(&json)?;
            std::fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

/// Creates the cache directory 0700 whatever the umask: entries describe
/// the user's software and paths.
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// An exclusive lock on one cache entry, released when dropped.
#[derive(Debug)]
pub(crate) struct EntryLock {
    _file: std::fs::File,
}

impl Cache {
    /// Waits for an exclusive lock on the entry `key`, so that of many
    /// recorders starting at once with a cold cache, one computes an
    /// expensive entry and the others then read it. `None` when the cache
    /// directory is unusable (then everyone computes for themselves).
    pub(crate) fn lock(&self, kind: &str, key: &str) -> Option<EntryLock> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        create_private_dir(&self.dir).ok()?;
        let path = self.file(kind, key).with_extension("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .ok()?;
        loop {
            // SAFETY: flock on a descriptor we own.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Some(EntryLock { _file: file });
            }
            if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return None;
            }
        }
    }
}

/// What identifies a file's content without reading it: size, modification
/// time, inode and device. `None` when it does not exist.
pub(crate) fn stat_key(path: &Path) -> Option<String> {
    let m = std::fs::metadata(path).ok()?;
    Some(format!(
        "{}:{}.{}:{}:{}",
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ino(),
        m.dev()
    ))
}

/// Modification time in nanoseconds, `None` when the path does not exist.
pub(crate) fn mtime_ns(path: &Path) -> Option<i64> {
    let m = std::fs::metadata(path).ok()?;
    Some(m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        assert_eq!(cache.get::<String>("k", "a"), None);
        cache.put("k", "a", &"value".to_string());
        assert_eq!(cache.get::<String>("k", "a").as_deref(), Some("value"));
        assert_eq!(cache.get::<String>("k", "b"), None);
        // A wrong type or a corrupt file is a miss, and is overwritten.
        assert_eq!(cache.get::<u32>("k", "a"), None);
        std::fs::write(cache.file("k", "a"), b"{not json").unwrap();
        assert_eq!(cache.get::<String>("k", "a"), None);
        cache.put("k", "a", &"again".to_string());
        assert_eq!(cache.get::<String>("k", "a").as_deref(), Some("again"));
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(&cache.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
