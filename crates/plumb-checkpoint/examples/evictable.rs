//! A long computation that survives eviction.
//!
//! ```text
//! cargo run -p plumb-checkpoint --example evictable -- /tmp/sum-ckpt 50000000
//! # in another terminal, while it runs:
//! kill -TERM <pid>     # it saves, prints where it stopped, exits with 75
//! # run the same command again: it resumes from the checkpoint
//! ```
//!
//! The result is the same as an uninterrupted run: the sum of i*i mod 1e9+7
//! over 0..N.

use plumb_checkpoint::{Checkpointer, EXIT_EVICTED};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Progress {
    next: u64,
    sum: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: evictable DIR [N]")?;
    let n: u64 = args.next().map_or(Ok(10_000_000), |s| s.parse())?;
    let mut ckpt = Checkpointer::builder(&dir).every_steps(1_000_000).open()?;
    let mut p: Progress = ckpt.restore()?.unwrap_or_default();
    if p.next > 0 {
        eprintln!("resuming at {} (pid {})", p.next, std::process::id());
    } else {
        eprintln!(
            "starting (pid {}); send SIGTERM to evict, exit code will be {EXIT_EVICTED}",
            std::process::id()
        );
    }
    while p.next < n {
        p.sum = (p.sum + p.next * p.next % 1_000_000_007) % 1_000_000_007;
        p.next += 1;
        // Saves every million steps, or saves and exits 75 after SIGTERM.
        ckpt.at_safe_point(&p)?;
    }
    ckpt.save(&p)?;
    println!("{}", p.sum);
    Ok(())
}
