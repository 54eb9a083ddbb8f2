//! Parses the exception or panic a program died with from the tail of its
//! stderr: Python tracebacks (chained too), Rust panics, Java exceptions, Go
//! panics.

use plumb_model::Exception;

/// Finds the last exception or panic in the tail of a failed program's
/// stderr and parses it.
pub fn parse(stderr_tail: &[u8]) -> Option<Exception> {
    let _ = stderr_tail;
    None
}
