//! Words: what a chunk's filter holds and what a search looks up.

use crate::bloom::Bloom;

/// The word filter of a chunk's bytes: sized at one bit per two raw bytes,
/// then folded while it stays under a third full.
pub fn word_filter(raw: &[u8]) -> Bloom {
    let mut bloom = Bloom::with_blocks((raw.len() / 2 / 256).max(1));
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            unsafe { insert_words_avx2(raw, &mut bloom) };
        } else {
            insert_words(raw, &mut bloom);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    insert_words(raw, &mut bloom);
    bloom.fold_to(0.33);
    bloom
}

/// [`insert_words`] compiled for AVX2, where a filter update (eight lanes,
/// eight multiplies) is a handful of vector instructions.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn insert_words_avx2(raw: &[u8], bloom: &mut Bloom) {
    insert_words(raw, bloom);
}

/// Inserts every word of `raw`. Every word is inserted, repeated or not:
/// checking first would cost a branch that mispredicts on every new word.
#[inline(always)]
fn insert_words(raw: &[u8], bloom: &mut Bloom) {
    for_each_word_fast(raw, |h| bloom.insert(h));
}

/// The same words and hashes as [`for_each_word`], found 64 bytes at a time:
/// a bit mask of word bytes per block (SIMD on x86_64) turns the byte loop
/// into a walk over word boundaries, and short words are hashed from one
/// 8-byte load. Indexing calls this for every byte of output, so it is the
/// recorder's hot path; search uses the plain version on its short queries.
#[inline(always)]
pub fn for_each_word_fast(text: &[u8], mut f: impl FnMut(u64)) {
    let n = text.len();
    // Start of the word that continues into the current block, if any.
    let mut open: Option<usize> = None;
    let mut base = 0;
    while base < n {
        let mut pad = [0u8; 64];
        let block: &[u8; 64] = match text.get(base..base + 64) {
            Some(b) => b.try_into().expect("64 bytes"),
            None => {
                // The tail, padded with non-word bytes so its last word ends.
                pad[..n - base].copy_from_slice(&text[base..]);
                &pad
            }
        };
        let m = word_mask(block);
        let prev = u64::from(open.is_some());
        let shifted = (m << 1) | prev;
        let starts = m & !shifted;
        let ends = !m & shifted;
        let mut edges = starts | ends;
        while edges != 0 {
            let i = edges.trailing_zeros() as usize;
            edges &= edges - 1;
            let at = base + i;
            match open.take() {
                None => open = Some(at),
                Some(s) => f(hash_span(text, s, at.min(n))),
            }
        }
        base += 64;
    }
    if let Some(s) = open {
        f(hash_span(text, s, n));
    }
}

/// Bit `i` is set when `block[i]` is a word byte (see [`WORD`]).
#[inline(always)]
fn word_mask(block: &[u8; 64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of the x86_64 baseline; the loads read 16
        // bytes each from a 64-byte array.
        unsafe {
            let mut m = 0u64;
            for k in 0..4 {
                let v = _mm_loadu_si128(block.as_ptr().add(16 * k).cast());
                let lower = _mm_or_si128(v, _mm_set1_epi8(0x20));
                // Unsigned range checks as signed compares after a shift of
                // the range's start to -128.
                let letter = _mm_cmplt_epi8(
                    _mm_add_epi8(lower, _mm_set1_epi8((128u8 - b'a') as i8)),
                    _mm_set1_epi8(-128 + 26),
                );
                let digit = _mm_cmplt_epi8(
                    _mm_add_epi8(v, _mm_set1_epi8((128u8 - b'0') as i8)),
                    _mm_set1_epi8(-128 + 10),
                );
                let under = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'_' as i8));
                let word = _mm_or_si128(_mm_or_si128(letter, digit), under);
                // Non-ASCII bytes have their top bit set: movemask of v.
                let bits = (_mm_movemask_epi8(word) | _mm_movemask_epi8(v)) as u32 as u64;
                m |= (bits & 0xffff) << (16 * k);
            }
            m
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut m = 0u64;
        for (i, b) in block.iter().enumerate() {
            m |= u64::from(WORD[*b as usize]) << i;
        }
        m
    }
}

/// Keeps the first `i` bytes of a little-endian word.
const KEEP: [u64; 9] = {
    let mut t = [0u64; 9];
    let mut i = 1;
    while i <= 8 {
        t[i] = u64::MAX >> (8 * (8 - i));
        i += 1;
    }
    t
};

/// [`hash_word`] of `text[s..e]`. Words of up to 16 bytes (nearly all) are
/// hashed from two loads without branching on their length, which would
/// mispredict on mixed text.
#[inline(always)]
fn hash_span(text: &[u8], s: usize, e: usize) -> u64 {
    const FOLD: u64 = 0x2020_2020_2020_2020;
    const K: u64 = 0x9fb2_1c65_1e98_df25;
    let len = e - s;
    if len <= 16
        && let Some(b) = text.get(s..s + 16)
    {
        let lo = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
        let hi = u64::from_le_bytes(b[8..].try_into().expect("8 bytes"));
        let v0 = (lo | FOLD) & KEEP[len.min(8)];
        let v1 = (hi | FOLD) & KEEP[len.saturating_sub(8)];
        let h0 = 0x9e37_79b9_7f4a_7c15 ^ len as u64;
        let h1 = (h0 ^ v0).wrapping_mul(K).rotate_left(29);
        let h2 = (h1 ^ v1).wrapping_mul(K).rotate_left(29);
        return finish(if len > 8 { h2 } else { h1 });
    }
    hash_word(&text[s..e])
}

/// Byte classes: true for bytes that belong to words. ASCII letters, digits
/// and `_`, and every non-ASCII byte (so UTF-8 words stay whole).
const WORD: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80;
        i += 1;
    }
    t
};

/// Whether `b` belongs to a word: ASCII letters and digits, `_`, and every
/// non-ASCII byte. The word filters and search's line check share it.
#[inline]
pub fn is_word_byte(b: u8) -> bool {
    WORD[b as usize]
}

/// Calls `f` with the hash of every word in `text` (ASCII case folded).
#[inline]
pub fn for_each_word(text: &[u8], mut f: impl FnMut(u64)) {
    let n = text.len();
    let mut i = 0;
    while i < n {
        while i < n && !WORD[text[i] as usize] {
            i += 1;
        }
        let start = i;
        while i < n && WORD[text[i] as usize] {
            i += 1;
        }
        if i > start {
            f(hash_word(&text[start..i]));
        }
    }
}

/// Hashes a word eight bytes at a time. Case folding is an OR with 0x20 on
/// every byte: it maps ASCII capitals to small letters, leaves digits alone,
/// and changes `_` and non-ASCII bytes consistently on both the indexing and
/// the query side, which is all a filter needs.
#[inline]
fn hash_word(w: &[u8]) -> u64 {
    const FOLD: u64 = 0x2020_2020_2020_2020;
    const K: u64 = 0x9fb2_1c65_1e98_df25;
    let mut h = 0x9e37_79b9_7f4a_7c15 ^ w.len() as u64;
    let mut chunks = w.chunks_exact(8);
    for c in &mut chunks {
        let v = u64::from_le_bytes(c.try_into().expect("8 bytes")) | FOLD;
        h = (h ^ v).wrapping_mul(K).rotate_left(29);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        let v = u64::from_le_bytes(b) | (FOLD >> (8 * (8 - rest.len())));
        h = (h ^ v).wrapping_mul(K).rotate_left(29);
    }
    finish(h)
}

/// A full-avalanche finish, because the filter uses both halves of the hash.
#[inline]
fn finish(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::encode;
    use plumb_model::Stream;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Stored filters and queries must agree on every word and hash, so
        /// the fast scanner must equal the plain one byte for byte.
        #[test]
        fn fast_word_scan_equals_plain_scan(text in proptest::collection::vec(prop_oneof![
            Just(b' '), Just(b'\n'), Just(b'_'), Just(b'A'), Just(b'z'), Just(b'9'),
            Just(0xc3u8), Just(b'@'), Just(b'['), Just(b'`'), Just(b'{'), Just(b'/'), Just(b':'),
            any::<u8>(),
        ], 0..400)) {
            let (mut plain, mut fast) = (Vec::new(), Vec::new());
            for_each_word(&text, |h| plain.push(h));
            for_each_word_fast(&text, |h| fast.push(h));
            prop_assert_eq!(plain, fast);
        }
    }

    #[test]
    fn fast_word_scan_handles_words_across_blocks_and_ends() {
        for len in [1usize, 7, 8, 9, 63, 64, 65, 130] {
            for lead in [0usize, 1, 56, 60, 63, 64] {
                let mut text = vec![b' '; lead];
                text.extend(std::iter::repeat_n(b'Q', len));
                for tail in [0usize, 1, 5] {
                    let mut t = text.clone();
                    t.extend(std::iter::repeat_n(b'.', tail));
                    let (mut plain, mut fast) = (Vec::new(), Vec::new());
                    for_each_word(&t, |h| plain.push(h));
                    for_each_word_fast(&t, |h| fast.push(h));
                    assert_eq!(plain.len(), 1, "len {len} lead {lead} tail {tail}");
                    assert_eq!(plain, fast, "len {len} lead {lead} tail {tail}");
                }
            }
        }
    }

    #[test]
    fn words_are_found_case_insensitively() {
        let c = encode(Stream::Stdout, &[], b"Connection REFUSED by upstream-7\n");
        let bloom = Bloom::from_bytes(&c.bloom).unwrap();
        for w in ["connection", "refused", "upstream", "7", "BY"] {
            let mut hs = vec![];
            for_each_word(w.as_bytes(), |h| hs.push(h));
            assert!(bloom.may_contain(hs[0]), "{w}");
        }
    }
}
