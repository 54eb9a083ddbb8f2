//! Why two runs differ: `plumb diff`.
