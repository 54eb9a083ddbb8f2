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
//! Building that filter costs more CPU than compressing, so a recorder under
//! a flood of output may store chunks without one (an empty `bloom`, see
//! [`IndexPolicy`]). Search scans such chunks in full, so nothing is missed,
//! and stores the filters it builds on the way for the searches after it.
//!
//! Encoded form, format 2 (written since session 4): the four bytes
//! [`MAGIC_V2`], then `varint header_len`, `varint header_lz4_len`, the
//! header as an LZ4 block, `varint raw_len` and the raw bytes as an LZ4
//! block. The header is `varint nreads` then per read `varint offset_delta`,
//! `varint seq_delta`, `varint zigzag(time_delta_ns)`. Keeping the header
//! apart from the bytes lets the raw bytes be compressed where they lie,
//! without first copying them behind the header.
//!
//! Format 1 (stores written before) is read still: a little-endian `u32`
//! size, then one LZ4 block of `u8 1`, the header as above, and the raw
//! bytes. Its size is below 4 GiB by far, so its fourth byte is never 0xFF,
//! which is the fourth byte of [`MAGIC_V2`].

use crate::bloom::Bloom;
use crate::error::{Result, StoreError};
use plumb_model::{Stream, Timestamp};

/// Raw bytes after which a chunk is sealed at the next newline.
pub const CHUNK_TARGET: usize = 256 * 1024;
/// Raw bytes after which a chunk is sealed even in the middle of a line.
pub const CHUNK_MAX: usize = 1024 * 1024;

/// The first byte of a format 1 payload, inside its compressed block.
const FORMAT_V1: u8 = 1;

/// The first four bytes of a format 2 chunk. Read as a format 1 size prefix
/// they would claim a payload of over 4 GiB, which no format 1 chunk has.
pub const MAGIC_V2: [u8; 4] = [b'P', b'C', b'2', 0xFF];

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

/// When a sealed chunk gets its word filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexPolicy {
    /// Always, as it is sealed.
    Always,
    /// As it is sealed while the stream's output stays under
    /// `bytes_per_sec`, with bursts of up to `burst` bytes (a token bucket).
    /// Beyond that rate chunks are stored without a filter: indexing then
    /// would take more CPU than the program being recorded, on cores that
    /// program needs. Search indexes them when it first scans them.
    RateLimited {
        /// Sustained rate of raw bytes indexed as sealed.
        bytes_per_sec: u64,
        /// Raw bytes that may be indexed at once after a quiet spell.
        burst: u64,
    },
}

/// A chunk cut from its stream but not encoded yet: what
/// [`ChunkBuilder::push_raw`] hands over, so that compression can run on
/// another thread than the one reading output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawChunk {
    /// Which stream.
    pub stream: Stream,
    /// Position of this chunk among its stream's chunks, from 0.
    pub part: u64,
    /// The reads its bytes came from.
    pub marks: Vec<ReadMark>,
    /// The buffer holding the bytes, from [`RawChunk::base`] on (a buffer
    /// adopted from a read keeps room in front, see
    /// [`ChunkBuilder::push_owned`]).
    pub raw: Vec<u8>,
    /// Where the chunk's bytes start in `raw`.
    pub base: usize,
    /// Whether it gets its word filter when sealed (see [`IndexPolicy`]).
    pub index: bool,
}

impl RawChunk {
    /// The chunk's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.raw[self.base..]
    }

    /// Encodes it: compressed, checksummed, with its word filter if
    /// [`RawChunk::index`].
    pub fn seal(&self) -> SealedChunk {
        let mut sealed = encode_with(self.stream, &self.marks, self.bytes(), self.index);
        sealed.part = self.part;
        sealed
    }
}

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

/// Encodes a chunk from its reads and bytes, with its word filter.
pub fn encode(stream: Stream, marks: &[ReadMark], raw: &[u8]) -> SealedChunk {
    encode_with(stream, marks, raw, true)
}

/// Encodes a chunk (format 2), with its word filter when `index` (else an
/// empty `bloom`).
///
/// # Panics
/// When `raw` is 2 GiB or more, beyond what one LZ4 block holds; chunks are
/// at most [`CHUNK_MAX`].
pub fn encode_with(stream: Stream, marks: &[ReadMark], raw: &[u8], index: bool) -> SealedChunk {
    let mut header = Vec::with_capacity(marks.len() * 6 + 8);
    put_varint(&mut header, marks.len() as u64);
    // The first read's sequence number and time are stored as deltas from 0.
    let (mut off, mut seq, mut t) = (0u64, 0u64, 0i64);
    let first_time = marks.first().map_or(0, |m| m.time.as_nanos());
    for m in marks {
        put_varint(&mut header, m.offset as u64 - off);
        put_varint(&mut header, m.seq - seq);
        put_varint(&mut header, zigzag(m.time.as_nanos() - t));
        off = m.offset as u64;
        seq = m.seq;
        t = m.time.as_nanos();
    }
    let compress = || {
        let mut data = Vec::with_capacity(
            MAGIC_V2.len() + 3 * 10 + lz4::bound(header.len()) + lz4::bound(raw.len()),
        );
        data.extend_from_slice(&MAGIC_V2);
        put_varint(&mut data, header.len() as u64);
        let header_block = lz4::compress(&header);
        put_varint(&mut data, header_block.len() as u64);
        data.extend_from_slice(&header_block);
        put_varint(&mut data, raw.len() as u64);
        lz4::compress_append(raw, &mut data);
        data
    };
    // Building the word filter and compressing are independent; for a full
    // chunk do them on two cores so a chatty program waits less.
    let (data, bloom) = if !index {
        (compress(), Vec::new())
    } else if raw.len() >= 64 * 1024 {
        std::thread::scope(|s| {
            let bloom = s.spawn(|| word_filter(raw).to_bytes());
            let data = compress();
            (data, bloom.join().expect("word filter thread"))
        })
    } else {
        (compress(), word_filter(raw).to_bytes())
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

/// The most bytes a stored chunk decodes to. Chunks hold at most
/// [`CHUNK_MAX`] bytes plus their read marks; anything claiming more is
/// corrupt, and is refused before memory is allocated for it.
const MAX_DECODED: usize = 64 << 20;

/// Decodes a stored chunk (format 1 or 2), checking its checksum.
pub fn decode(data: &[u8], crc: u32) -> Result<DecodedChunk> {
    if crc32c::crc32c(data) != crc {
        return Err(StoreError::Corrupt("output chunk checksum mismatch".into()));
    }
    match data.strip_prefix(&MAGIC_V2) {
        Some(rest) => decode_v2(rest),
        None => decode_v1(data),
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("output chunk {what}"))
}

/// Format 2: header and bytes in two LZ4 blocks.
fn decode_v2(mut p: &[u8]) -> Result<DecodedChunk> {
    let header_len = take_len(&mut p)?;
    let block_len = take_len(&mut p)?;
    let block = p
        .get(..block_len)
        .ok_or_else(|| corrupt("header block runs past its end"))?;
    p = &p[block_len..];
    let header = lz4::decompress(block, header_len)?;
    let mut h = &header[..];
    let marks = take_marks(&mut h, header_len)?;
    if !h.is_empty() {
        return Err(corrupt("header has bytes after its read marks"));
    }
    let raw_len = take_len(&mut p)?;
    let raw = lz4::decompress(p, raw_len)?;
    check_marks(&marks, raw.len())?;
    Ok(DecodedChunk { marks, raw })
}

/// Format 1: one LZ4 block behind a little-endian `u32` size, holding the
/// format byte, the header and the bytes.
fn decode_v1(data: &[u8]) -> Result<DecodedChunk> {
    let (size, block) = data
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt("ends early"))?;
    let size = u32::from_le_bytes(*size) as usize;
    if size > MAX_DECODED {
        return Err(corrupt("size too large"));
    }
    let mut payload = lz4::decompress(block, size)?;
    let mut p = &payload[..];
    let format = take_u8(&mut p)?;
    if format != FORMAT_V1 {
        return Err(StoreError::Corrupt(format!(
            "output chunk format {format} is not known to this plumb (knows 1 and 2)"
        )));
    }
    let marks = take_marks(&mut p, payload.len())?;
    let header_len = payload.len() - p.len();
    check_marks(&marks, p.len())?;
    payload.drain(..header_len);
    Ok(DecodedChunk {
        marks,
        raw: payload,
    })
}

/// A varint length, refused when beyond [`MAX_DECODED`].
fn take_len(p: &mut &[u8]) -> Result<usize> {
    let v = take_varint(p)?;
    if v > MAX_DECODED as u64 {
        return Err(corrupt("length too large"));
    }
    Ok(v as usize)
}

/// Reads the read count and the read marks; `limit` bounds the count.
fn take_marks(p: &mut &[u8], limit: usize) -> Result<Vec<ReadMark>> {
    let n = take_varint(p)? as usize;
    if n > limit {
        return Err(corrupt("read count too large"));
    }
    let mut marks = Vec::with_capacity(n);
    let (mut off, mut seq, mut t) = (0u64, 0u64, 0i64);
    for _ in 0..n {
        off += take_varint(p)?;
        let ds = take_varint(p)?;
        let dt = unzigzag(take_varint(p)?);
        seq = seq.wrapping_add(ds);
        t = t.wrapping_add(dt);
        marks.push(ReadMark {
            offset: off as u32,
            seq,
            time: Timestamp::from_nanos(t),
        });
    }
    Ok(marks)
}

fn check_marks(marks: &[ReadMark], raw_len: usize) -> Result<()> {
    if marks.iter().any(|m| m.offset as usize > raw_len) {
        return Err(corrupt("read offset out of range"));
    }
    Ok(())
}

/// LZ4 blocks through liblz4 (the C library, built from source by
/// `lz4-sys`): it compresses this kind of output about 1.4 times faster
/// than lz4_flex, and compression is most of what recording a flood of
/// output costs.
mod lz4 {
    use super::corrupt;
    use crate::error::Result;
    use std::ffi::c_int;

    /// The largest input one LZ4 block takes (`LZ4_MAX_INPUT_SIZE`).
    const MAX_INPUT: usize = 0x7E00_0000;

    /// The most bytes compressing `len` bytes can produce.
    pub(super) fn bound(len: usize) -> usize {
        len + len / 255 + 16
    }

    /// The LZ4 block of `src`.
    pub(super) fn compress(src: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        compress_append(src, &mut out);
        out
    }

    /// Appends the LZ4 block of `src` to `out` (nothing for empty input).
    pub(super) fn compress_append(src: &[u8], out: &mut Vec<u8>) {
        if src.is_empty() {
            return;
        }
        assert!(src.len() < MAX_INPUT, "LZ4 block input too large");
        let cap = bound(src.len());
        out.reserve(cap);
        // SAFETY: `src` is readable for its length and `out` has `cap`
        // writable bytes past its length; LZ4_compress_default writes at
        // most `cap` bytes (at least LZ4_compressBound, which `bound`
        // exceeds) and returns how many it wrote.
        let n = unsafe {
            lz4_sys::LZ4_compress_default(
                src.as_ptr().cast(),
                out.as_mut_ptr().add(out.len()).cast(),
                src.len() as c_int,
                cap as c_int,
            )
        };
        assert!(n > 0, "LZ4 compression failed with room for its bound");
        // SAFETY: LZ4 initialized the `n` bytes after the old length.
        unsafe { out.set_len(out.len() + n as usize) };
    }

    /// Decompresses the LZ4 block `src`, which must give exactly `len`
    /// bytes (`len` is at most `MAX_DECODED`).
    pub(super) fn decompress(src: &[u8], len: usize) -> Result<Vec<u8>> {
        if len == 0 {
            return if src.is_empty() {
                Ok(Vec::new())
            } else {
                Err(corrupt("has bytes where an empty block belongs"))
            };
        }
        if src.len() >= MAX_INPUT {
            return Err(corrupt("block too large"));
        }
        let mut out: Vec<u8> = Vec::with_capacity(len);
        // SAFETY: LZ4_decompress_safe reads at most `src.len()` bytes of
        // `src`, writes at most `len` bytes into `out`'s capacity, whatever
        // the input, and returns the number written or a negative error.
        let n = unsafe {
            lz4_sys::LZ4_decompress_safe(
                src.as_ptr().cast(),
                out.as_mut_ptr().cast(),
                src.len() as c_int,
                len as c_int,
            )
        };
        if n < 0 || n as usize != len {
            return Err(corrupt("does not decompress"));
        }
        // SAFETY: exactly `len` bytes were written.
        unsafe { out.set_len(len) };
        Ok(out)
    }
}

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

    /// A chunk as stores written before format 2 hold it (written by the
    /// format 1 encoder, lz4_flex): it must read back unchanged.
    const FORMAT_1_CHUNK: &[u8] = &[
        0x58, 0x00, 0x00, 0x00, 0xff, 0x0e, 0x01, 0x02, 0x00, 0x03, 0x80, 0x80, 0xd0, 0xe2, 0xc6,
        0xbf, 0xce, 0x97, 0x2f, 0x30, 0x02, 0xb8, 0x17, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x20, 0x77,
        0x6f, 0x72, 0x6c, 0x64, 0x0a, 0x0c, 0x00, 0x11, 0xf0, 0x08, 0x73, 0x65, 0x63, 0x6f, 0x6e,
        0x64, 0x20, 0x72, 0x65, 0x61, 0x64, 0x2c, 0x20, 0x6e, 0x6f, 0x20, 0x6e, 0x65, 0x77, 0x6c,
        0x69, 0x6e, 0x65,
    ];
    const FORMAT_1_CRC: u32 = 0xb369_4c27;

    #[test]
    fn format_1_chunks_still_decode() {
        let data = FORMAT_1_CHUNK;
        let d = decode(data, FORMAT_1_CRC).unwrap();
        let raw: &[u8] =
            b"hello world\nhello world\nhello world\nhello world\nsecond read, no newline";
        assert_eq!(d.raw, raw);
        let t0 = 1_700_000_000_000_000_000;
        assert_eq!(
            d.marks,
            vec![
                ReadMark {
                    offset: 0,
                    seq: 3,
                    time: Timestamp::from_nanos(t0),
                },
                ReadMark {
                    offset: 48,
                    seq: 5,
                    time: Timestamp::from_nanos(t0 + 1_500),
                },
            ]
        );
        // The same chunk written today reads back the same, in format 2.
        let again = encode(Stream::Stdout, &d.marks, &d.raw);
        assert_eq!(again.data[..4], MAGIC_V2);
        assert_eq!(decode(&again.data, again.crc).unwrap(), d);
        // A format 1 chunk whose inner format byte is unknown is refused
        // with the formats this plumb knows.
        let mut payload = vec![7u8, 0];
        payload.extend_from_slice(b"x");
        let mut bad = (payload.len() as u32).to_le_bytes().to_vec();
        lz4::compress_append(&payload, &mut bad);
        let err = decode(&bad, crc32c::crc32c(&bad)).unwrap_err().to_string();
        assert!(
            err.contains("format 7") && err.contains("knows 1 and 2"),
            "{err}"
        );
    }

    #[test]
    fn format_2_keeps_marks_and_bytes_of_many_reads() {
        let mut b = ChunkBuilder::new(Stream::Stdout);
        let mut raws = Vec::new();
        let mut all = Vec::new();
        for i in 0..30_000u64 {
            let line = format!("line {i} of many, some of it repeated\n");
            all.extend_from_slice(line.as_bytes());
            b.push_raw(
                i,
                Timestamp::from_nanos(i as i64 * 1_000),
                line.as_bytes(),
                &mut raws,
            );
        }
        b.flush_raw(&mut raws);
        assert!(raws.len() >= 3, "{} chunks", raws.len());
        let mut got = Vec::new();
        for (part, r) in raws.iter().enumerate() {
            assert_eq!(r.part, part as u64);
            let sealed = r.seal();
            assert_eq!(sealed.part, part as u64);
            assert!(sealed.data.len() * 3 < r.bytes().len(), "compressed");
            let d = decode(&sealed.data, sealed.crc).unwrap();
            assert_eq!(d.marks, r.marks);
            got.extend_from_slice(&d.raw);
        }
        assert_eq!(got, all);
        // Truncated anywhere, a chunk is refused, never misread.
        let sealed = raws[0].seal();
        for cut in [3, 4, 5, 8, sealed.data.len() / 2, sealed.data.len() - 1] {
            let short = &sealed.data[..cut];
            assert!(
                matches!(
                    decode(short, crc32c::crc32c(short)),
                    Err(StoreError::Corrupt(_))
                ),
                "cut at {cut}"
            );
        }
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
