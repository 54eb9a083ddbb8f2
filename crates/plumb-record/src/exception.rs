//! Parses the exception or panic a program died with from the tail of its
//! stderr: Python tracebacks (chained too), Rust panics, Java exceptions, Go
//! panics.
