//! Output chunks: how a run's stdout and stderr are stored.
//!
//! A run's output is cut, per stream, into chunks of about [`CHUNK_TARGET`]
//! raw bytes, cut after a newline where there is one. A chunk keeps the bytes
//! exactly as read plus an index of the reads they came from (offset,
//! sequence number shared by both streams, time), so `plumb logs` can replay
//! both streams byte for byte in the order they were produced and give every
//! line its time. The encoded form is LZ4-compressed and checksummed
//! (CRC32C); its words are summarized in a [`Bloom`] filter that search
//! consults before decompressing anything.
//!
//! Encoded payload (before compression), format 1:
//! `u8 format` `varint nreads` then per read `varint offset_delta`,
//! `varint seq_delta`, `varint zigzag(time_delta_ns)`, then the raw bytes.

use crate::bloom::Bloom;
use crate::error::{Result, StoreError};
use plumb_model::{Stream, Timestamp};

/// Raw bytes after which a chunk is sealed at the next newline.
pub const CHUNK_TARGET: usize = 256 * 1024;
/// Raw bytes after which a chunk is sealed even in the middle of a line.
pub const CHUNK_MAX: usize = 1024 * 1024;

const FORMAT: u8 = 1;

/// One read's place in a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadMark {
    /// Byte offset in the chunk where this read's bytes start.
    pub offset: u32,
    /// Sequence number of the read across both streams.
    pub seq: u64,
    /// When it was read.
    pub time: Timestamp,
}

/// A chunk ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedChunk {
    /// Which stream.
    pub stream: Stream,
    /// Position of this chunk among its stream's chunks, from 0.
    pub part: u64,
    /// Sequence number of its first read.
    pub first_seq: u64,
    /// Time of its first read.
    pub t_min: Timestamp,
    /// Time of its last read.
    pub t_max: Timestamp,
    /// Newline-terminated lines, plus one if it ends the stream without one.
    pub lines: u64,
    /// Raw bytes before compression.
    pub raw_bytes: u64,
    /// CRC32C of `data`.
    pub crc: u32,
    /// The word filter (stored form).
    pub bloom: Vec<u8>,
    /// The compressed payload.
    pub data: Vec<u8>,
}

/// A decoded chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedChunk {
    /// The reads, in order.
    pub marks: Vec<ReadMark>,
    /// The bytes.
    pub raw: Vec<u8>,
}

impl DecodedChunk {
    /// The time of the read that produced the byte at `offset`.
    pub fn time_at(&self, offset: usize) -> Timestamp {
        let i = self
            .marks
            .partition_point(|m| m.offset as usize <= offset)
            .saturating_sub(1);
        self.marks
            .get(i)
            .map(|m| m.time)
            .unwrap_or(Timestamp::from_nanos(0))
    }

    /// The segments of this chunk, one per read: (seq, byte range).
    pub fn segments(&self) -> impl Iterator<Item = (u64, std::ops::Range<usize>)> + '_ {
        self.marks.iter().enumerate().map(move |(i, m)| {
            let end = self
                .marks
                .get(i + 1)
                .map(|n| n.offset as usize)
                .unwrap_or(self.raw.len());
            (m.seq, m.offset as usize..end)
        })
    }
}

/// Accumulates one stream's reads and seals chunks.
#[derive(Debug)]
pub struct ChunkBuilder {
    stream: Stream,
    parts: u64,
    raw: Vec<u8>,
    marks: Vec<ReadMark>,
}

impl ChunkBuilder {
    /// An empty builder for `stream`.
    pub fn new(stream: Stream) -> ChunkBuilder {
        ChunkBuilder {
            stream,
            parts: 0,
            raw: Vec::with_capacity(CHUNK_TARGET + 64 * 1024),
            marks: Vec::new(),
        }
    }

    /// Raw bytes waiting.
    pub fn pending(&self) -> usize {
        self.raw.len()
    }

    /// Adds one read; returns the chunks that became full.
    pub fn push(&mut self, seq: u64, time: Timestamp, data: &[u8], out: &mut Vec<SealedChunk>) {
        let mut data = data;
        while !data.is_empty() {
            let room = CHUNK_MAX - self.raw.len();
            let take = room.min(data.len());
            self.marks.push(ReadMark {
                offset: self.raw.len() as u32,
                seq,
                time,
            });
            self.raw.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.raw.len() >= CHUNK_TARGET {
                self.seal_full(out);
            }
        }
    }

    /// Seals up to the last newline once past the target (or everything at
    /// the maximum), keeping the unfinished line for the next chunk.
    fn seal_full(&mut self, out: &mut Vec<SealedChunk>) {
        let cut = match memchr::memrchr(b'\n', &self.raw) {
            Some(nl) => nl + 1,
            None if self.raw.len() >= CHUNK_MAX => self.raw.len(),
            None => return,
        };
        self.seal_at(cut, out);
    }

    fn seal_at(&mut self, cut: usize, out: &mut Vec<SealedChunk>) {
        if cut == 0 {
            return;
        }
        // Marks that start before the cut belong to this chunk; the last of
        // them continues into the carried-over bytes when it straddles the cut.
        let n_in = self.marks.partition_point(|m| (m.offset as usize) < cut);
        let mut carry_marks: Vec<ReadMark> = self.marks[n_in..]
            .iter()
            .map(|m| ReadMark {
                offset: m.offset - cut as u32,
                ..*m
            })
            .collect();
        if cut < self.raw.len() && carry_marks.first().is_none_or(|m| m.offset != 0) {
            let straddling = self.marks[n_in - 1];
            carry_marks.insert(
                0,
                ReadMark {
                    offset: 0,
                    ..straddling
                },
            );
        }
        self.marks.truncate(n_in);
        let carry = self.raw.split_off(cut);
        let mut sealed = encode(self.stream, &self.marks, &self.raw);
        sealed.part = self.parts;
        self.parts += 1;
        out.push(sealed);
        self.raw.clear();
        self.raw.extend_from_slice(&carry);
        self.marks = carry_marks;
    }

    /// Seals whatever is waiting (at a flush timer or the end of the stream).
    pub fn flush(&mut self, out: &mut Vec<SealedChunk>) {
        let len = self.raw.len();
        self.seal_at(len, out);
    }
}

/// Encodes a chunk from its reads and bytes.
pub fn encode(stream: Stream, marks: &[ReadMark], raw: &[u8]) -> SealedChunk {
    let mut payload = Vec::with_capacity(raw.len() + marks.len() * 6 + 8);
    payload.push(FORMAT);
    put_varint(&mut payload, marks.len() as u64);
    // The first read's sequence number and time are stored as deltas from 0.
    let (mut off, mut seq, mut t) = (0u64, 0u64, 0i64);
    let first_time = marks.first().map_or(0, |m| m.time.as_nanos());
    for m in marks {
        put_varint(&mut payload, m.offset as u64 - off);
        put_varint(&mut payload, m.seq - seq);
        put_varint(&mut payload, zigzag(m.time.as_nanos() - t));
        off = m.offset as u64;
        seq = m.seq;
        t = m.time.as_nanos();
    }
    payload.extend_from_slice(raw);
    // Building the word filter and compressing are independent; for a full
    // chunk do them on two cores so a chatty program waits less.
    let (data, bloom) = if raw.len() >= 64 * 1024 {
        std::thread::scope(|s| {
            let bloom = s.spawn(|| word_filter(raw).to_bytes());
            let data = lz4_flex::compress_prepend_size(&payload);
            (data, bloom.join().expect("word filter thread"))
        })
    } else {
        (
            lz4_flex::compress_prepend_size(&payload),
            word_filter(raw).to_bytes(),
        )
    };
    let crc = crc32c::crc32c(&data);
    let mut lines = memchr::memchr_iter(b'\n', raw).count() as u64;
    if raw.last().is_some_and(|b| *b != b'\n') {
        lines += 1;
    }
    SealedChunk {
        stream,
        part: 0,
        first_seq: marks.first().map_or(0, |m| m.seq),
        t_min: Timestamp::from_nanos(first_time),
        t_max: Timestamp::from_nanos(
            marks
                .iter()
                .map(|m| m.time.as_nanos())
                .max()
                .unwrap_or(first_time),
        ),
        lines,
        raw_bytes: raw.len() as u64,
        crc,
        bloom,
        data,
    }
}

/// Decodes a stored chunk, checking its checksum.
pub fn decode(data: &[u8], crc: u32) -> Result<DecodedChunk> {
    if crc32c::crc32c(data) != crc {
        return Err(StoreError::Corrupt("output chunk checksum mismatch".into()));
    }
    let payload = lz4_flex::decompress_size_prepended(data)
        .map_err(|e| StoreError::Corrupt(format!("output chunk does not decompress: {e}")))?;
    let mut p = &payload[..];
    let format = take_u8(&mut p)?;
    if format != FORMAT {
        return Err(StoreError::Corrupt(format!(
            "output chunk format {format} is not known to this plumb (knows {FORMAT})"
        )));
    }
    let n = take_varint(&mut p)? as usize;
    if n > payload.len() {
        return Err(StoreError::Corrupt(
            "output chunk read count too large".into(),
        ));
    }
    let mut marks = Vec::with_capacity(n);
    let (mut off, mut seq, mut t) = (0u64, 0u64, 0i64);
    for _ in 0..n {
        off += take_varint(&mut p)?;
        let ds = take_varint(&mut p)?;
        let dt = unzigzag(take_varint(&mut p)?);
        seq = seq.wrapping_add(ds);
        t = t.wrapping_add(dt);
        marks.push(ReadMark {
            offset: off as u32,
            seq,
            time: Timestamp::from_nanos(t),
        });
    }
    if marks.iter().any(|m| m.offset as usize > p.len()) {
        return Err(StoreError::Corrupt(
            "output chunk read offset out of range".into(),
        ));
    }
    Ok(DecodedChunk {
        marks,
        raw: p.to_vec(),
    })
}

/// The word filter of a chunk's bytes: sized at one bit per two raw bytes,
/// then folded while it stays under a third full.
pub fn word_filter(raw: &[u8]) -> Bloom {
    let mut bloom = Bloom::with_blocks((raw.len() / 2 / 256).max(1));
    for_each_word(raw, |h| bloom.insert(h));
    bloom.fold_to(0.33);
    bloom
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

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn take_u8(p: &mut &[u8]) -> Result<u8> {
    let (&b, rest) = p
        .split_first()
        .ok_or_else(|| StoreError::Corrupt("output chunk ends early".into()))?;
    *p = rest;
    Ok(b)
}

fn take_varint(p: &mut &[u8]) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = take_u8(p)?;
        v |= ((b & 0x7f) as u64) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(StoreError::Corrupt("output chunk varint too long".into()))
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn replay(chunks: &[SealedChunk]) -> Vec<(u64, Vec<u8>)> {
        let mut segs = Vec::new();
        for c in chunks {
            let d = decode(&c.data, c.crc).unwrap();
            for (seq, r) in d.segments() {
                segs.push((seq, d.raw[r].to_vec()));
            }
        }
        segs
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn bytes_and_reads_survive_chunking(reads in proptest::collection::vec(proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'a'), any::<u8>()], 0..40_000), 1..30)) {
            let mut b = ChunkBuilder::new(Stream::Stdout);
            let mut out = Vec::new();
            for (i, r) in reads.iter().enumerate() {
                b.push(i as u64 * 2, Timestamp::from_nanos(1_000 + i as i64), r, &mut out);
            }
            b.flush(&mut out);
            let all: Vec<u8> = reads.concat();
            let got: Vec<u8> = replay(&out).into_iter().flat_map(|(_, b)| b).collect();
            prop_assert_eq!(&got, &all);
            // Every read's bytes keep its sequence number.
            let mut by_seq: std::collections::BTreeMap<u64, Vec<u8>> = Default::default();
            for (seq, bytes) in replay(&out) { by_seq.entry(seq).or_default().extend(bytes); }
            for (i, r) in reads.iter().enumerate() {
                if !r.is_empty() { prop_assert_eq!(&by_seq[&(i as u64 * 2)], r); }
            }
            let lines: u64 = out.iter().map(|c| c.lines).sum();
            prop_assert!(lines >= memchr::memchr_iter(b'\n', &all).count() as u64);
        }
    }

    #[test]
    fn chunks_are_cut_after_newlines() {
        let line = b"0123456789 abcdefghi\n";
        let mut b = ChunkBuilder::new(Stream::Stderr);
        let mut out = Vec::new();
        for i in 0..40_000u64 {
            b.push(i, Timestamp::from_nanos(i as i64), line, &mut out);
        }
        b.flush(&mut out);
        assert!(out.len() > 2);
        for c in &out {
            let d = decode(&c.data, c.crc).unwrap();
            assert_eq!(d.raw.last(), Some(&b'\n'));
            assert_eq!(c.stream, Stream::Stderr);
        }
        assert_eq!(out.iter().map(|c| c.lines).sum::<u64>(), 40_000);
    }

    #[test]
    fn corruption_is_detected() {
        let c = encode(
            Stream::Stdout,
            &[ReadMark {
                offset: 0,
                seq: 5,
                time: Timestamp::from_nanos(7),
            }],
            b"hello world\n",
        );
        let mut bad = c.data.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(decode(&bad, c.crc), Err(StoreError::Corrupt(_))));
        let ok = decode(&c.data, c.crc).unwrap();
        assert_eq!(ok.marks[0].seq, 5);
        assert_eq!(ok.marks[0].time, Timestamp::from_nanos(7));
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
