//! A chunk's encoded form, written and read.
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

use super::{DecodedChunk, ReadMark, SealedChunk, lz4, word_filter};
use crate::error::{Result, StoreError};
use plumb_model::{Stream, Timestamp};

/// The first byte of a format 1 payload, inside its compressed block.
const FORMAT_V1: u8 = 1;

/// The first four bytes of a format 2 chunk. Read as a format 1 size prefix
/// they would claim a payload of over 4 GiB, which no format 1 chunk has.
pub const MAGIC_V2: [u8; 4] = [b'P', b'C', b'2', 0xFF];

/// Encodes a chunk from its reads and bytes, with its word filter.
pub fn encode(stream: Stream, marks: &[ReadMark], raw: &[u8]) -> SealedChunk {
    encode_with(stream, marks, raw, true)
}

/// Encodes a chunk (format 2), with its word filter when `index` (else an
/// empty `bloom`).
///
/// # Panics
/// When `raw` is 2 GiB or more, beyond what one LZ4 block holds; chunks are
/// at most [`CHUNK_MAX`](super::CHUNK_MAX).
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
/// [`CHUNK_MAX`](super::CHUNK_MAX) bytes plus their read marks; anything claiming more is
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

pub(super) fn corrupt(what: &str) -> StoreError {
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
        off = off
            .checked_add(take_varint(p)?)
            .filter(|&o| o <= u32::MAX as u64)
            .ok_or_else(|| corrupt("read offset out of range"))?;
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
    // Offsets must rise and stay within the bytes: readers slice the raw
    // bytes from one read's offset to the next one's.
    let mut prev = 0u32;
    for m in marks {
        if m.offset < prev || m.offset as usize > raw_len {
            return Err(corrupt("read offset out of range"));
        }
        prev = m.offset;
    }
    Ok(())
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

/// The body of the fuzz target `decode_chunk` (in `fuzz/`), as a plain
/// function so the stable tests replay its checked-in corpus
/// (`fuzz/corpus/decode_chunk`). Decoding any bytes must give a chunk or
/// an error, never a panic; a chunk that decodes must have reads that
/// slice its bytes, and encode to a chunk that decodes to the same reads
/// and bytes.
#[doc(hidden)]
pub fn fuzz_decode_chunk(data: &[u8]) {
    // The stored checksum is checked first; try both the right one (to get
    // past it) and a wrong one.
    let crc = crc32c::crc32c(data);
    assert!(decode(data, crc ^ 1).is_err());
    let Ok(d) = decode(data, crc) else { return };
    let mut total = 0;
    for (_, r) in d.segments() {
        total += d.raw[r].len();
    }
    assert!(total <= d.raw.len());
    let again = encode(Stream::Stdout, &d.marks, &d.raw);
    let back = decode(&again.data, again.crc).expect("a re-encoded chunk decodes");
    assert_eq!(back.marks, d.marks);
    assert_eq!(back.raw, d.raw);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::ChunkBuilder;

    #[test]
    fn fuzz_corpus_replays_clean() {
        plumb_model::fuzzing::replay("decode_chunk", 3, fuzz_decode_chunk);
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
}
