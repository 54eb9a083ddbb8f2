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
//!//!
//! One concern a module: [`builder`] cuts a stream into chunks, [`codec`]
//! encodes and decodes them (its module documentation has the byte format),
//! `lz4` wraps the C library, and [`words`] splits text into the words the
//! filters hold.

mod builder;
mod codec;
mod lz4;
mod words;

pub use builder::{BUF_CAPACITY, ChunkBuilder, READ_HEADROOM};
pub use codec::{MAGIC_V2, decode, encode, encode_with, fuzz_decode_chunk};
pub use words::{for_each_word, for_each_word_fast, is_word_byte, word_filter};

use plumb_model::{Stream, Timestamp};

/// Raw bytes after which a chunk is sealed at the next newline.
pub const CHUNK_TARGET: usize = 256 * 1024;
/// Raw bytes after which a chunk is sealed even in the middle of a line.
pub const CHUNK_MAX: usize = 1024 * 1024;

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
