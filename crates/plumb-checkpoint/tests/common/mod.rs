//! Shared by the integration tests: a state whose every value can be
//! recomputed from its counter, so a restored state can be checked for being
//! exactly one that was saved.

#![allow(dead_code)] // Each test binary uses a different part.

use serde::{Deserialize, Serialize};

/// A state whose content is a function of `counter`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub counter: u64,
    pub blob: String,
}

/// The one state saved with this counter. Sizes vary from a few bytes to
/// about 100 KB so that kills land in writes of very different lengths.
/// Built by copying, not char by char, because tests run unoptimized and
/// the torture's children call this in their save loop.
pub fn state_for(counter: u64) -> State {
    const ALPHABET: &str = "abcdefghijklmnopqrstuvwxyz";
    let len = (counter.wrapping_mul(7919) % 100_000) as usize;
    let start = (counter % 26) as usize;
    let base = ALPHABET.repeat(len / 26 + 2);
    State {
        counter,
        blob: base[start..start + len].to_string(),
    }
}

/// A small deterministic pseudo-random generator (xorshift64*), seeded by the
/// test so a failure can be replayed from the printed seed.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// A seed from the clock, printed by the caller.
pub fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(42)
}
