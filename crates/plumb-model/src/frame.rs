//! Frames: how spool files and native ingest bodies delimit records.
//!
//! A frame is an 8-byte header, `u32 length` and `u32 CRC32C` of the
//! payload (little-endian), then the payload, whose first byte is its kind
//! ([`KIND_RUN`], [`KIND_FINGERPRINT`], [`KIND_CHUNK`]). Frames are
//! self-delimiting and checksummed, so a file cut short by a crash reads as
//! its whole frames, and a corrupt one is found. The recorder writes them
//! (`plumb_store::spool`), the shipper reads them from files it ships
//! (`plumb_ship`), and the store imports them; this module is the one
//! definition all of them use.

use std::fmt;

/// Kind of a frame holding a run record (JSON).
pub const KIND_RUN: u8 = 1;
/// Kind of a frame holding a fingerprint (`u16 hash length`, hash, JSON).
pub const KIND_FINGERPRINT: u8 = 2;
/// Kind of a frame holding an output chunk.
pub const KIND_CHUNK: u8 = 3;
/// Bytes of a frame header.
pub const HEADER: usize = 8;
/// The largest payload a frame may have.
pub const MAX_PAYLOAD: u32 = 64 * 1024 * 1024;

/// What is wrong with a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than a header.
    TruncatedHeader {
        /// Bytes there are.
        have: usize,
    },
    /// A header claiming an empty payload.
    Empty,
    /// A header claiming more than [`MAX_PAYLOAD`].
    TooLarge {
        /// The length claimed.
        len: u32,
    },
    /// Fewer payload bytes than the header claims.
    Truncated {
        /// The length claimed.
        len: u32,
        /// Bytes there are.
        have: usize,
    },
    /// The payload does not match the header's checksum.
    Checksum {
        /// The header's CRC32C.
        want: u32,
        /// The payload's.
        got: u32,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TruncatedHeader { have } => {
                write!(
                    f,
                    "truncated header: {have} bytes where a frame header needs {HEADER}"
                )
            }
            FrameError::Empty => f.write_str("empty payload"),
            FrameError::TooLarge { len } => {
                write!(
                    f,
                    "length {len} exceeds the largest frame, {MAX_PAYLOAD} bytes"
                )
            }
            FrameError::Truncated { len, have } => {
                write!(
                    f,
                    "truncated: the header says {len} payload bytes, {have} remain"
                )
            }
            FrameError::Checksum { want, got } => write!(
                f,
                "checksum mismatch: header says CRC32C {want:#010x}, payload has {got:#010x}"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Payload length.
    pub len: u32,
    /// Payload CRC32C.
    pub crc: u32,
}

impl Header {
    /// Reads a header, refusing lengths no frame has.
    pub fn parse(bytes: &[u8; HEADER]) -> Result<Header, FrameError> {
        let len = u32::from_le_bytes(bytes[..4].try_into().expect("4"));
        let crc = u32::from_le_bytes(bytes[4..].try_into().expect("4"));
        match len {
            0 => Err(FrameError::Empty),
            n if n > MAX_PAYLOAD => Err(FrameError::TooLarge { len }),
            _ => Ok(Header { len, crc }),
        }
    }

    /// Bytes of the whole frame, header included.
    pub fn frame_len(&self) -> usize {
        HEADER + self.len as usize
    }

    /// Checks a payload against the checksum.
    pub fn check(&self, payload: &[u8]) -> Result<(), FrameError> {
        let got = crc32c::crc32c(payload);
        if got == self.crc {
            Ok(())
        } else {
            Err(FrameError::Checksum {
                want: self.crc,
                got,
            })
        }
    }
}

/// Appends one frame holding `payload`.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// A frame's payload and the bytes after the frame.
pub type Split<'a> = (&'a [u8], &'a [u8]);

/// The first frame of `bytes`: its payload and the bytes after it; `None`
/// when `bytes` is empty.
pub fn next(bytes: &[u8]) -> Result<Option<Split<'_>>, FrameError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let Some(head) = bytes.first_chunk::<HEADER>() else {
        return Err(FrameError::TruncatedHeader { have: bytes.len() });
    };
    let h = Header::parse(head)?;
    let rest = &bytes[HEADER..];
    if rest.len() < h.len as usize {
        return Err(FrameError::Truncated {
            len: h.len,
            have: rest.len(),
        });
    }
    let (payload, after) = rest.split_at(h.len as usize);
    h.check(payload)?;
    Ok(Some((payload, after)))
}

/// The payloads of the whole frames at the start of `bytes`, stopping at
/// the first torn or corrupt one (the end of a file cut short).
pub fn whole(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut p = bytes;
    while let Ok(Some((payload, rest))) = next(p) {
        out.push(payload);
        p = rest;
    }
    out
}

/// The body of the fuzz target `read_frames` (in `fuzz/`), as a plain
/// function so the stable tests replay its checked-in corpus
/// (`fuzz/corpus/read_frames`). Any bytes read as frames must give whole
/// frames and then stop, never panic; the frames read must encode back to
/// exactly the bytes they were read from.
#[doc(hidden)]
pub fn fuzz_read_frames(data: &[u8]) {
    let payloads = whole(data);
    let mut again = Vec::new();
    for p in &payloads {
        encode(p, &mut again);
    }
    assert!(data.starts_with(&again), "frames re-encode to their bytes");
    // Stepping with `next` stops at the same place, with an error unless
    // the bytes ended there.
    let mut rest = data;
    let mut n = 0;
    loop {
        match next(rest) {
            Ok(Some((_, after))) => {
                assert!(after.len() < rest.len());
                rest = after;
                n += 1;
            }
            Ok(None) => {
                assert_eq!(again.len(), data.len());
                break;
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                assert!(again.len() < data.len());
                break;
            }
        }
    }
    assert_eq!(n, payloads.len());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fuzz_corpus_replays_clean() {
        crate::fuzzing::replay("read_frames", 3, fuzz_read_frames);
    }

    proptest! {
        #[test]
        fn frames_read_back_and_a_cut_keeps_the_whole_ones(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..8),
            cut in any::<proptest::sample::Index>(),
        ) {
            let mut bytes = Vec::new();
            let mut ends = vec![0];
            for p in &payloads {
                encode(p, &mut bytes);
                ends.push(bytes.len());
            }
            let back: Vec<Vec<u8>> = whole(&bytes).into_iter().map(<[u8]>::to_vec).collect();
            prop_assert_eq!(&back, &payloads);
            let at = cut.index(bytes.len() + 1);
            let kept = ends.iter().filter(|e| **e <= at).count() - 1;
            prop_assert_eq!(whole(&bytes[..at]).len(), kept);
        }
    }

    #[test]
    fn bad_frames_are_named() {
        let mut f = Vec::new();
        encode(b"\x01{}", &mut f);
        assert_eq!(next(&f[..5]), Err(FrameError::TruncatedHeader { have: 5 }));
        assert_eq!(
            next(&f[..9]),
            Err(FrameError::Truncated { len: 3, have: 1 })
        );
        let mut bad = f.clone();
        bad[10] ^= 1;
        assert!(matches!(next(&bad), Err(FrameError::Checksum { .. })));
        assert_eq!(next(&[0u8; 8]), Err(FrameError::Empty));
        let mut big = vec![0xff; 8];
        big[..4].copy_from_slice(&(MAX_PAYLOAD + 1).to_le_bytes());
        assert_eq!(
            next(&big),
            Err(FrameError::TooLarge {
                len: MAX_PAYLOAD + 1
            })
        );
    }
}
