//! Post-mortem locals for Python programs, with no change to the program:
//! `plumb run` puts a `sitecustomize` (the file beside this one) first on
//! the child's `PYTHONPATH`, and every Python process of the run that dies
//! of an uncaught exception appends its frames with their local variables
//! to a private file. When the run ends the file is read
//! ([`plumb_model::postmortem::parse`], bounded), kept in
//! [`plumb_model::Run::postmortem`] (redacted with the rest of the record)
//! and removed.
//!
//! Python started with `-S` or `-I` does not import `sitecustomize`, so
//! those processes leave nothing; the run is recorded as before.

use plumb_model::postmortem::{self, PostMortem};
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The hook, as Python reads it.
pub const SITECUSTOMIZE: &str = include_str!("postmortem/sitecustomize.py");

/// The most of the file read: more than every bound of
/// [`plumb_model::postmortem`] allows together.
const MAX_READ: u64 = 8 << 20;

/// The hook installed for one run.
#[derive(Debug)]
pub struct Hook {
    file: PathBuf,
    env: Vec<(String, String)>,
}

impl Hook {
    /// Writes the hook into `dir/python` (once; rewritten if it differs,
    /// so an upgrade takes effect) and chooses the run's file under
    /// `dir/postmortem`. `pythonpath` is the child's `PYTHONPATH` as
    /// inherited, which the hook's directory goes in front of.
    pub fn prepare(
        dir: &Path,
        run_id: plumb_model::Uuid,
        pythonpath: Option<OsString>,
    ) -> std::io::Result<Hook> {
        let code = dir.join("python");
        let files = dir.join("postmortem");
        for d in [&code, &files] {
            // Private, like the rest of the store: the locals of a run are
            // as sensitive as its output.
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(d)?;
        }
        let site = code.join("sitecustomize.py");
        if std::fs::read_to_string(&site).ok().as_deref() != Some(SITECUSTOMIZE) {
            // Written beside and renamed, so a Python starting meanwhile
            // never reads half a file.
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let tmp = code.join(format!(".sitecustomize.py.{}", std::process::id()));
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?
                .write_all(SITECUSTOMIZE.as_bytes())?;
            std::fs::rename(&tmp, &site)?;
        }
        let file = files.join(format!("{run_id}.jsonl"));
        let mut path = code.into_os_string();
        if let Some(rest) = pythonpath.filter(|p| !p.is_empty()) {
            path.push(":");
            path.push(rest);
        }
        Ok(Hook {
            env: vec![
                ("PYTHONPATH".into(), path.to_string_lossy().into_owned()),
                (
                    "PLUMB_POSTMORTEM_FILE".into(),
                    file.to_string_lossy().into_owned(),
                ),
            ],
            file,
        })
    }

    /// The variables the child gets.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// What the run's processes wrote, bounded; the file is removed. A
    /// warning for the run record when something could not be read.
    pub fn collect(self) -> (Vec<PostMortem>, Option<String>) {
        let mut text = String::new();
        let read = std::fs::File::open(&self.file)
            .and_then(|f| f.take(MAX_READ).read_to_string(&mut text));
        let _ = std::fs::remove_file(&self.file);
        match read {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (Vec::new(), None),
            Err(e) => {
                return (
                    Vec::new(),
                    Some(format!(
                        "cannot read the post-mortem file {}: {e}",
                        self.file.display()
                    )),
                );
            }
        }
        let (found, bad) = postmortem::parse(&text);
        let warning = (bad > 0).then(|| {
            format!(
                "{bad} post-mortem record(s) written by the program did not parse and were left out"
            )
        });
        (found, warning)
    }
}
