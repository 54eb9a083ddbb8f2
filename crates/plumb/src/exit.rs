//! plumb's exit codes, one table for every command (README "Exit codes"),
//! after diff(1) and grep(1): 0 same or found, 1 different or not found,
//! 2 trouble, 130 interrupted; `plumb run` passes its program's code through.

/// A query matched nothing, or a reference named nothing.
pub const NOT_FOUND: u8 = 1;
/// `plumb diff`: the runs differ.
pub const DIFFERENT: u8 = 1;
/// Trouble: a usage error, a malformed value, an unreachable collector.
pub const TROUBLE: u8 = 2;
/// Interrupted (SIGINT) before the command could finish, as a shell reports it.
pub const INTERRUPTED: u8 = 130;
/// Terminated (SIGTERM) before the command could finish.
pub const TERMINATED: u8 = 143;

/// An error meaning "there is no such thing" (a fingerprint, node or token
/// that matches nothing); it exits [`NOT_FOUND`] rather than [`TROUBLE`].
#[derive(Debug)]
pub struct NotFound(pub String);

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotFound {}

/// The exit code for a command that failed with `err`: [`NOT_FOUND`] when
/// anything in its chain says a reference matched nothing (here, in the
/// local store, or a 404 from the collector), else [`TROUBLE`].
pub fn for_error(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.downcast_ref::<NotFound>().is_some()
            || matches!(
                cause.downcast_ref::<plumb_store::StoreError>(),
                Some(
                    plumb_store::StoreError::NoSuchRun(_) | plumb_store::StoreError::NoSuchTrace(_)
                )
            )
            || http_status(cause) == Some(404)
        {
            return NOT_FOUND;
        }
    }
    TROUBLE
}

/// The HTTP status a collector answered, if `cause` is the one client's
/// error or one of the errors wrapping it.
fn http_status(cause: &(dyn std::error::Error + 'static)) -> Option<u16> {
    if let Some(e) = cause.downcast_ref::<plumb_http::Error>() {
        return e.status();
    }
    if let Some(e) = cause.downcast_ref::<plumb_collector::client::RemoteError>() {
        return e.status();
    }
    cause
        .downcast_ref::<plumb_ship::ShipError>()
        .and_then(plumb_ship::ShipError::status)
}
