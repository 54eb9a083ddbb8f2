//! A split-block Bloom filter over the words of an output chunk.
//!
//! Each word hashes to one 32-byte block and sets one bit in each of the
//! block's eight 32-bit lanes (the layout Parquet uses), so a lookup touches a
//! single 32-byte range: search reads just that range of each chunk's filter
//! from SQLite instead of whole filters. The block count is a power of two,
//! which lets a filter be folded in half (OR of both halves) when it turned
//! out sparser than sized; folding keeps every word that was inserted.

/// Bytes per block.
pub const BLOCK_BYTES: usize = 32;

const SALT: [u32; 8] = [
    0x47b6_137b,
    0x4497_4d91,
    0x8824_ad5b,
    0xa2b7_289d,
    0x7054_95c7,
    0x2df1_424b,
    0x9efc_4947,
    0x5c6b_fb31,
];

/// A split-block Bloom filter under construction or as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bloom {
    blocks: Vec<[u32; 8]>,
}

/// Which block a hash selects in a filter of `nblocks` blocks (a power of two).
#[inline(always)]
pub fn block_index(hash: u64, nblocks: usize) -> usize {
    ((hash >> 32) as usize) & (nblocks - 1)
}

#[inline(always)]
fn mask(hash: u64) -> [u32; 8] {
    let key = hash as u32;
    let mut m = [0u32; 8];
    for i in 0..8 {
        m[i] = 1u32 << (key.wrapping_mul(SALT[i]) >> 27);
    }
    m
}

/// The bits a word's hash sets in its block, as the block's 32 bytes are
/// stored (eight little-endian lanes): a block may contain the word when
/// it has every one of them. For backends that test blocks in SQL.
pub fn block_mask(hash: u64) -> [u8; BLOCK_BYTES] {
    let m = mask(hash);
    let mut out = [0u8; BLOCK_BYTES];
    for (i, lane) in m.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&lane.to_le_bytes());
    }
    out
}

/// Whether a stored block (32 little-endian bytes) may contain `hash`.
pub fn block_may_contain(block: &[u8], hash: u64) -> bool {
    let m = mask(hash);
    (0..8).all(|i| {
        let lane = u32::from_le_bytes(block[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
        lane & m[i] == m[i]
    })
}

impl Bloom {
    /// A filter with at least `nblocks` blocks (rounded up to a power of two).
    pub fn with_blocks(nblocks: usize) -> Bloom {
        Bloom {
            blocks: vec![[0; 8]; nblocks.max(1).next_power_of_two()],
        }
    }

    /// Number of blocks.
    pub fn nblocks(&self) -> usize {
        self.blocks.len()
    }

    /// Adds a word's hash.
    #[inline(always)]
    pub fn insert(&mut self, hash: u64) {
        let i = block_index(hash, self.blocks.len());
        let m = mask(hash);
        let b = &mut self.blocks[i];
        for j in 0..8 {
            b[j] |= m[j];
        }
    }

    /// Whether the filter may contain the hash (false means certainly not).
    pub fn may_contain(&self, hash: u64) -> bool {
        let i = block_index(hash, self.blocks.len());
        let m = mask(hash);
        (0..8).all(|j| self.blocks[i][j] & m[j] == m[j])
    }

    /// Share of bits set, 0.0 to 1.0.
    pub fn fill(&self) -> f64 {
        let ones: u32 = self
            .blocks
            .iter()
            .flat_map(|b| b.iter())
            .map(|l| l.count_ones())
            .sum();
        ones as f64 / (self.blocks.len() * 256) as f64
    }

    /// Halves the filter while it stays sparser than `max_fill` after
    /// halving; every inserted hash is still found afterwards.
    pub fn fold_to(&mut self, max_fill: f64) {
        while self.blocks.len() > 1 {
            let half = self.blocks.len() / 2;
            let mut folded = self.blocks[..half].to_vec();
            for (i, b) in self.blocks[half..].iter().enumerate() {
                for j in 0..8 {
                    folded[i][j] |= b[j];
                }
            }
            let candidate = Bloom { blocks: folded };
            if candidate.fill() > max_fill {
                return;
            }
            *self = candidate;
        }
    }

    /// The stored form: blocks as little-endian u32 lanes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.blocks.len() * BLOCK_BYTES);
        for b in &self.blocks {
            for lane in b {
                out.extend_from_slice(&lane.to_le_bytes());
            }
        }
        out
    }

    /// Reads the stored form; `None` when the length is not a power-of-two
    /// number of blocks.
    pub fn from_bytes(bytes: &[u8]) -> Option<Bloom> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(BLOCK_BYTES) {
            return None;
        }
        let n = bytes.len() / BLOCK_BYTES;
        if !n.is_power_of_two() {
            return None;
        }
        let blocks = bytes
            .chunks_exact(BLOCK_BYTES)
            .map(|c| {
                let mut b = [0u32; 8];
                for (j, lane) in b.iter_mut().enumerate() {
                    *lane = u32::from_le_bytes(c[j * 4..j * 4 + 4].try_into().expect("4"));
                }
                b
            })
            .collect();
        Some(Bloom { blocks })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn inserted_hashes_are_found_after_folding(hashes in proptest::collection::vec(any::<u64>(), 1..500), blocks in 1usize..256) {
            let mut b = Bloom::with_blocks(blocks);
            for h in &hashes { b.insert(*h); }
            b.fold_to(0.5);
            let stored = Bloom::from_bytes(&b.to_bytes()).unwrap();
            for h in &hashes {
                prop_assert!(stored.may_contain(*h));
                let i = block_index(*h, stored.nblocks());
                let bytes = stored.to_bytes();
                prop_assert!(block_may_contain(&bytes[i * BLOCK_BYTES..(i + 1) * BLOCK_BYTES], *h));
            }
        }
    }

    #[test]
    fn false_positive_rate_is_low_at_ten_bits_per_word() {
        let mut b = Bloom::with_blocks(10_000 * 10 / 256);
        for i in 0..10_000u64 {
            b.insert(xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes()));
        }
        let fp = (10_000..110_000u64)
            .filter(|i| b.may_contain(xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes())))
            .count();
        assert!(fp < 3_000, "false positive rate {}%", fp as f64 / 1000.0);
    }
}
