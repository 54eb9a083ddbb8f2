//! Configuration: built-in default < plumb.toml < PLUMB_* environment < flags.
