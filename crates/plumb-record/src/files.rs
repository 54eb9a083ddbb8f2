//! Configuration, input and output files named on the command line: size,
//! SHA-256, and the (redacted) content of small configuration files.
