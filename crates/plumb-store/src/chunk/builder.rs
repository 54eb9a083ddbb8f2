//! Cutting one stream's reads into chunks.

use super::{CHUNK_MAX, CHUNK_TARGET, IndexPolicy, RawChunk, ReadMark, SealedChunk};
use plumb_model::{Stream, Timestamp};

/// Capacity of a chunk's byte buffer: a chunk is sealed once past
/// [`CHUNK_TARGET`], so it holds the target plus the rest of one read.
pub const BUF_CAPACITY: usize = CHUNK_TARGET + 64 * 1024;

/// Room kept in front of a read in a buffer handed to
/// [`ChunkBuilder::push_owned`]: the unfinished line carried over from the
/// previous chunk is put there, so the read's bytes stay where they were
/// read and become the chunk without being copied.
pub const READ_HEADROOM: usize = 4096;

/// Buffers of encoded chunks kept for reuse per builder.
const SPARE_BUFFERS: usize = 8;

/// Accumulates one stream's reads and seals chunks.
#[derive(Debug)]
pub struct ChunkBuilder {
    stream: Stream,
    parts: u64,
    /// The waiting bytes are `raw[base..]`.
    raw: Vec<u8>,
    base: usize,
    marks: Vec<ReadMark>,
    policy: IndexPolicy,
    /// Raw bytes that may still be indexed now (RateLimited only).
    tokens: f64,
    refilled: std::time::Instant,
    /// Byte buffers of chunks already encoded, given back with
    /// [`ChunkBuilder::recycle`]: reusing them keeps their pages from being
    /// faulted in again for every chunk.
    spare: Vec<Vec<u8>>,
}

impl ChunkBuilder {
    /// An empty builder for `stream` that indexes every chunk.
    pub fn new(stream: Stream) -> ChunkBuilder {
        ChunkBuilder::with_policy(stream, IndexPolicy::Always)
    }

    /// An empty builder for `stream` that indexes chunks as `policy` says.
    pub fn with_policy(stream: Stream, policy: IndexPolicy) -> ChunkBuilder {
        let tokens = match policy {
            IndexPolicy::Always => 0.0,
            IndexPolicy::RateLimited { burst, .. } => burst as f64,
        };
        ChunkBuilder {
            stream,
            parts: 0,
            raw: Vec::with_capacity(BUF_CAPACITY),
            base: 0,
            marks: Vec::new(),
            policy,
            tokens,
            refilled: std::time::Instant::now(),
            spare: Vec::new(),
        }
    }

    /// Whether the chunk about to be sealed, of `len` raw bytes, gets its
    /// word filter now.
    fn index_now(&mut self, len: usize) -> bool {
        match self.policy {
            IndexPolicy::Always => true,
            IndexPolicy::RateLimited {
                bytes_per_sec,
                burst,
            } => {
                let now = std::time::Instant::now();
                let elapsed = now.duration_since(self.refilled).as_secs_f64();
                self.refilled = now;
                self.tokens = (self.tokens + elapsed * bytes_per_sec as f64).min(burst as f64);
                if self.tokens >= len as f64 {
                    self.tokens -= len as f64;
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Raw bytes waiting.
    pub fn pending(&self) -> usize {
        self.raw.len() - self.base
    }

    /// Adds one read; encodes and returns the chunks that became full.
    pub fn push(&mut self, seq: u64, time: Timestamp, data: &[u8], out: &mut Vec<SealedChunk>) {
        let mut raws = Vec::new();
        self.push_raw(seq, time, data, &mut raws);
        self.seal_all(raws, out);
    }

    /// Seals whatever is waiting (at a flush timer or the end of the stream).
    pub fn flush(&mut self, out: &mut Vec<SealedChunk>) {
        let mut raws = Vec::new();
        self.flush_raw(&mut raws);
        self.seal_all(raws, out);
    }

    fn seal_all(&mut self, raws: Vec<RawChunk>, out: &mut Vec<SealedChunk>) {
        for r in raws {
            out.push(r.seal());
            self.recycle(r.raw);
        }
    }

    /// Adds one read; returns the chunks that became full, not encoded yet
    /// (see [`RawChunk::seal`]).
    pub fn push_raw(&mut self, seq: u64, time: Timestamp, data: &[u8], out: &mut Vec<RawChunk>) {
        let mut data = data;
        while !data.is_empty() {
            let room = CHUNK_MAX - self.pending();
            let take = room.min(data.len());
            self.marks.push(ReadMark {
                offset: self.pending() as u32,
                seq,
                time,
            });
            self.raw.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending() >= CHUNK_TARGET {
                self.seal_full(out);
            }
        }
    }

    /// Adds one read given as a buffer whose bytes from `start` on are the
    /// read; returns the chunks that became full, not encoded yet.
    ///
    /// When what is waiting (normally the unfinished line of the last
    /// chunk) fits in the room before `start`, it is copied there and the
    /// buffer becomes this builder's: the read's bytes are not copied at
    /// all. Otherwise they are appended, as [`ChunkBuilder::push_raw`] does,
    /// and the buffer is kept for reuse.
    pub fn push_owned(
        &mut self,
        seq: u64,
        time: Timestamp,
        mut buf: Vec<u8>,
        start: usize,
        out: &mut Vec<RawChunk>,
    ) {
        let waiting = self.pending();
        let read = buf.len().saturating_sub(start);
        if read == 0 {
            self.recycle(buf);
            return;
        }
        if waiting > start || waiting + read > CHUNK_MAX || buf.capacity() < BUF_CAPACITY {
            self.push_raw(seq, time, &buf[start..], out);
            self.recycle(buf);
            return;
        }
        let base = start - waiting;
        buf[base..start].copy_from_slice(&self.raw[self.base..]);
        let old = std::mem::replace(&mut self.raw, buf);
        self.base = base;
        self.recycle(old);
        self.marks.push(ReadMark {
            offset: waiting as u32,
            seq,
            time,
        });
        if self.pending() >= CHUNK_TARGET {
            self.seal_full(out);
        }
    }

    /// Spare buffers kept.
    pub fn spares(&self) -> usize {
        self.spare.len()
    }

    /// Cuts whatever is waiting into a chunk, not encoded yet.
    pub fn flush_raw(&mut self, out: &mut Vec<RawChunk>) {
        let len = self.pending();
        self.seal_at(len, out);
    }

    /// Gives back the byte buffer of a chunk that has been sealed, for a
    /// later chunk of this builder to reuse.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS && buf.capacity() >= BUF_CAPACITY {
            self.spare.push(buf);
        }
    }

    /// Seals up to the last newline once past the target (or everything at
    /// the maximum), keeping the unfinished line for the next chunk.
    fn seal_full(&mut self, out: &mut Vec<RawChunk>) {
        let cut = match memchr::memrchr(b'\n', &self.raw[self.base..]) {
            Some(nl) => nl + 1,
            None if self.pending() >= CHUNK_MAX => self.pending(),
            None => return,
        };
        self.seal_at(cut, out);
    }

    fn seal_at(&mut self, cut: usize, out: &mut Vec<RawChunk>) {
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
        if cut < self.pending() && carry_marks.first().is_none_or(|m| m.offset != 0) {
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
        let marks = std::mem::replace(&mut self.marks, carry_marks);
        let index = self.index_now(cut);
        // The chunk takes the buffer as it is; only the unfinished line is
        // copied, into the next buffer.
        let mut next = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUF_CAPACITY));
        next.clear();
        next.extend_from_slice(&self.raw[self.base + cut..]);
        self.raw.truncate(self.base + cut);
        let raw = std::mem::replace(&mut self.raw, next);
        let base = std::mem::replace(&mut self.base, 0);
        out.push(RawChunk {
            stream: self.stream,
            part: self.parts,
            marks,
            raw,
            base,
            index,
        });
        self.parts += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bloom::Bloom;
    use crate::chunk::decode;
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
    fn rate_limited_indexing_stores_chunks_without_filters_past_the_burst() {
        let line = b"0123456789 abcdefghi\n";
        let policy = IndexPolicy::RateLimited {
            bytes_per_sec: 0,
            burst: CHUNK_TARGET as u64 + 4096,
        };
        let mut b = ChunkBuilder::with_policy(Stream::Stdout, policy);
        let mut out = Vec::new();
        for i in 0..40_000u64 {
            b.push(i, Timestamp::from_nanos(i as i64), line, &mut out);
        }
        b.flush(&mut out);
        assert!(out.len() >= 3);
        assert!(
            Bloom::from_bytes(&out[0].bloom).is_some(),
            "first chunk indexed"
        );
        assert!(
            out[1..].iter().all(|c| c.bloom.is_empty()),
            "later ones not"
        );
        // Unindexed chunks still hold every byte.
        let all: Vec<u8> = replay(&out).into_iter().flat_map(|(_, b)| b).collect();
        assert_eq!(all, line.repeat(40_000));
        let mut always = ChunkBuilder::new(Stream::Stdout);
        let mut out = Vec::new();
        always.push(0, Timestamp::from_nanos(0), &line.repeat(40_000), &mut out);
        always.flush(&mut out);
        assert!(out.iter().all(|c| Bloom::from_bytes(&c.bloom).is_some()));
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
    fn recycled_buffers_do_not_leak_old_bytes_into_new_chunks() {
        let mut b = ChunkBuilder::new(Stream::Stderr);
        let mut raws = Vec::new();
        b.push_raw(
            0,
            Timestamp::from_nanos(0),
            &vec![b'a'; CHUNK_TARGET + 10],
            &mut raws,
        );
        b.push_raw(1, Timestamp::from_nanos(1), b"\n", &mut raws);
        b.flush_raw(&mut raws);
        for r in raws.drain(..) {
            b.recycle(r.raw);
        }
        b.push_raw(2, Timestamp::from_nanos(2), b"short\n", &mut raws);
        b.flush_raw(&mut raws);
        assert_eq!(raws.len(), 1);
        assert_eq!(raws[0].bytes(), b"short\n");
        let d = decode(&raws[0].seal().data, raws[0].seal().crc).unwrap();
        assert_eq!(d.raw, b"short\n");
    }

    #[test]
    fn reads_handed_over_make_the_same_chunks_as_reads_copied() {
        // Lines of varying length, read in pieces of varying size (some
        // bigger than a chunk, some a few bytes), once copied with
        // `push_raw` and once handed over in buffers with room in front.
        let mut all = Vec::new();
        for i in 0..40_000u32 {
            all.extend_from_slice(
                format!("line {i} {}\n", "x".repeat((i % 97) as usize)).as_bytes(),
            );
        }
        all.extend_from_slice(b"no newline at the end");
        let sizes = [1usize, 7, 4096, 65_536, 262_144, 300_000, 13, 200_000];
        let (mut copied, mut owned) = (
            ChunkBuilder::new(Stream::Stdout),
            ChunkBuilder::new(Stream::Stdout),
        );
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut adopted = 0;
        let (mut at, mut k) = (0, 0);
        while at < all.len() {
            let n = sizes[k % sizes.len()].min(all.len() - at);
            let read = &all[at..at + n];
            let t = Timestamp::from_nanos(k as i64);
            copied.push_raw(k as u64, t, read, &mut a);
            let mut buf = Vec::with_capacity(BUF_CAPACITY + READ_HEADROOM);
            buf.resize(READ_HEADROOM, 0xEE);
            buf.extend_from_slice(read);
            let before = owned.raw.as_ptr();
            owned.push_owned(k as u64, t, buf, READ_HEADROOM, &mut b);
            adopted += usize::from(owned.raw.as_ptr() != before && owned.base > 0);
            at += n;
            k += 1;
        }
        copied.flush_raw(&mut a);
        owned.flush_raw(&mut b);
        assert!(adopted >= 5, "buffers adopted {adopted}");
        assert_eq!(a.len(), b.len());
        let mut joined = Vec::new();
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.bytes(), y.bytes(), "part {}", x.part);
            assert_eq!(x.marks, y.marks, "part {}", x.part);
            assert_eq!(x.part, y.part);
            let d = decode(&y.seal().data, y.seal().crc).unwrap();
            assert_eq!(d.raw, y.bytes());
            joined.extend_from_slice(&d.raw);
        }
        assert_eq!(joined, all);
    }
}
