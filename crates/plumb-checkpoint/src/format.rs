//! The on-disk frame of one checkpoint file: encoding and validation.
//!
//! The layout is specified in the crate documentation; this module is its only
//! implementation on the Rust side (the Python one lives in
//! `python/plumb/checkpoint.py`).

use std::fmt;

/// The eight bytes every checkpoint file starts with.
pub const MAGIC: [u8; 8] = *b"PLUMBCKP";
/// The format version this crate writes and the only one it reads.
pub const FORMAT_VERSION: u16 = 1;
/// Length of the fixed header in format version 1.
pub const HEADER_LEN: usize = 48;
/// Length of the trailer (the checksum).
pub const TRAILER_LEN: usize = 4;
/// The longest encoding name that fits in the header.
pub const MAX_ENCODING_LEN: usize = 8;

/// What the header of a valid checkpoint says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Sequence number: strictly increasing within one directory.
    pub seq: u64,
    /// When the checkpoint was written: nanoseconds since the Unix epoch, UTC.
    pub time_ns: i64,
    /// Length of the payload in bytes.
    pub payload_len: u64,
    /// How the payload is encoded (`json`, `raw`, or any name of up to eight
    /// printable ASCII characters chosen by the application).
    pub encoding: String,
}

/// Why a file is not a valid checkpoint. Both the Rust and the Python reader
/// check in the same order and report the same kind; see [`CorruptKind::code`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorruptKind {
    /// Shorter than a header plus a trailer: empty or cut off early.
    TooShort {
        /// Bytes found.
        len: u64,
    },
    /// Does not start with [`MAGIC`] (zero-filled, or not a checkpoint).
    BadMagic,
    /// A format version this reader does not know.
    UnsupportedVersion {
        /// The version in the header.
        version: u16,
    },
    /// A header field holds an impossible value.
    BadHeader {
        /// Which field, and what is wrong with it.
        reason: String,
    },
    /// The file is longer or shorter than its header says: torn or truncated.
    LengthMismatch {
        /// Header length + payload length + trailer length.
        expected: u64,
        /// Bytes found.
        actual: u64,
    },
    /// The checksum does not match the bytes: flipped bits or a torn write.
    ChecksumMismatch {
        /// The checksum stored in the trailer.
        stored: u32,
        /// The checksum of the bytes found.
        computed: u32,
    },
    /// The sequence number in the file name differs from the one in the
    /// header (a renamed or misplaced file).
    SequenceMismatch {
        /// From the file name.
        in_name: u64,
        /// From the header.
        in_header: u64,
    },
}

impl CorruptKind {
    /// A stable short name for this kind, shared with the Python reader and
    /// used in the test vectors' manifest.
    pub fn code(&self) -> &'static str {
        match self {
            CorruptKind::TooShort { .. } => "too_short",
            CorruptKind::BadMagic => "bad_magic",
            CorruptKind::UnsupportedVersion { .. } => "unsupported_version",
            CorruptKind::BadHeader { .. } => "bad_header",
            CorruptKind::LengthMismatch { .. } => "length_mismatch",
            CorruptKind::ChecksumMismatch { .. } => "checksum_mismatch",
            CorruptKind::SequenceMismatch { .. } => "sequence_mismatch",
        }
    }
}

impl fmt::Display for CorruptKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptKind::TooShort { len } => write!(
                f,
                "too short: {len} bytes, a checkpoint has at least {}",
                HEADER_LEN + TRAILER_LEN
            ),
            CorruptKind::BadMagic => write!(f, "bad magic: does not start with \"PLUMBCKP\""),
            CorruptKind::UnsupportedVersion { version } => write!(
                f,
                "unsupported format version {version} (this reader knows {FORMAT_VERSION})"
            ),
            CorruptKind::BadHeader { reason } => write!(f, "bad header: {reason}"),
            CorruptKind::LengthMismatch { expected, actual } => write!(
                f,
                "length mismatch: header says {expected} bytes, file has {actual} (torn or truncated)"
            ),
            CorruptKind::ChecksumMismatch { stored, computed } => write!(
                f,
                "checksum mismatch: stored crc32 {stored:08x}, computed {computed:08x}"
            ),
            CorruptKind::SequenceMismatch { in_name, in_header } => write!(
                f,
                "sequence mismatch: file name says {in_name}, header says {in_header}"
            ),
        }
    }
}

/// Checks that `encoding` can be stored in the header.
pub(crate) fn check_encoding(encoding: &str) -> Result<(), String> {
    if encoding.is_empty() || encoding.len() > MAX_ENCODING_LEN {
        return Err(format!(
            "encoding name {encoding:?} must be 1 to {MAX_ENCODING_LEN} bytes long"
        ));
    }
    if !encoding.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "encoding name {encoding:?} must be printable ASCII without spaces"
        ));
    }
    Ok(())
}

/// Builds the 48-byte header. The caller has checked `encoding`.
pub(crate) fn encode_header(
    seq: u64,
    time_ns: i64,
    payload_len: u64,
    encoding: &str,
) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[10..12].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
    // Bytes 12..16 are flags, all reserved and zero in version 1.
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    h[24..32].copy_from_slice(&time_ns.to_le_bytes());
    h[32..40].copy_from_slice(&payload_len.to_le_bytes());
    h[40..40 + encoding.len()].copy_from_slice(encoding.as_bytes());
    h
}

/// The checksum of a frame: CRC-32 (IEEE 802.3, the polynomial of zlib,
/// gzip and PNG) over the header followed by the payload.
pub(crate) fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header);
    hasher.update(payload);
    hasher.finalize()
}

/// Encodes one complete checkpoint file in memory.
///
/// [`crate::Checkpointer::save_bytes`] writes the same bytes without copying
/// the payload; this function exists for tools and test vectors.
///
/// # Errors
/// A message naming the problem when `encoding` cannot be stored.
pub fn encode_frame(
    seq: u64,
    time_ns: i64,
    encoding: &str,
    payload: &[u8],
) -> Result<Vec<u8>, String> {
    check_encoding(encoding)?;
    let header = encode_header(seq, time_ns, payload.len() as u64, encoding);
    let crc = checksum(&header, payload);
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + TRAILER_LEN);
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Validates a whole checkpoint file and returns its header and payload.
///
/// Checks, in this order (the Python reader uses the same order, so both
/// report the same [`CorruptKind`]): length at least 52, magic, version,
/// header length, flags, encoding name, total length, checksum.
pub fn decode_frame(bytes: &[u8]) -> Result<(Header, &[u8]), CorruptKind> {
    let len = bytes.len() as u64;
    if bytes.len() < HEADER_LEN + TRAILER_LEN {
        return Err(CorruptKind::TooShort { len });
    }
    if bytes[0..8] != MAGIC {
        return Err(CorruptKind::BadMagic);
    }
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let version = u16_at(8);
    if version != FORMAT_VERSION {
        return Err(CorruptKind::UnsupportedVersion { version });
    }
    let header_len = u16_at(10);
    if usize::from(header_len) != HEADER_LEN {
        return Err(CorruptKind::BadHeader {
            reason: format!("header length {header_len}, version 1 uses {HEADER_LEN}"),
        });
    }
    let flags = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    if flags != 0 {
        return Err(CorruptKind::BadHeader {
            reason: format!("reserved flags are {flags:#x}, must be 0"),
        });
    }
    let seq = u64_at(16);
    let time_ns = u64_at(24) as i64;
    let payload_len = u64_at(32);
    let enc_field = &bytes[40..48];
    let enc_len = enc_field
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(MAX_ENCODING_LEN);
    let valid_encoding = enc_len > 0
        && enc_field[..enc_len].iter().all(|b| b.is_ascii_graphic())
        && enc_field[enc_len..].iter().all(|&b| b == 0);
    if !valid_encoding {
        return Err(CorruptKind::BadHeader {
            reason: format!("encoding field {enc_field:02x?} is not NUL-padded printable ASCII"),
        });
    }
    let expected = (HEADER_LEN as u64 + TRAILER_LEN as u64).saturating_add(payload_len);
    if expected != len {
        return Err(CorruptKind::LengthMismatch {
            expected,
            actual: len,
        });
    }
    let body_end = bytes.len() - TRAILER_LEN;
    let stored = u32::from_le_bytes([
        bytes[body_end],
        bytes[body_end + 1],
        bytes[body_end + 2],
        bytes[body_end + 3],
    ]);
    let computed = checksum(&bytes[..HEADER_LEN], &bytes[HEADER_LEN..body_end]);
    if stored != computed {
        return Err(CorruptKind::ChecksumMismatch { stored, computed });
    }
    let encoding = String::from_utf8_lossy(&enc_field[..enc_len]).into_owned();
    Ok((
        Header {
            seq,
            time_ns,
            payload_len,
            encoding,
        },
        &bytes[HEADER_LEN..body_end],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_single_bit_flip_is_detected() {
        let frame = encode_frame(7, 1_700_000_000_123_456_789, "json", br#"{"a":1}"#).unwrap();
        let (h, p) = decode_frame(&frame).unwrap();
        assert_eq!(
            (h.seq, h.time_ns, h.encoding.as_str(), p),
            (7, 1_700_000_000_123_456_789, "json", &br#"{"a":1}"#[..])
        );
        for bit in 0..frame.len() * 8 {
            let mut bad = frame.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_frame(&bad).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let frame = encode_frame(1, 0, "raw", &[0xAB; 100]).unwrap();
        for cut in 0..frame.len() {
            assert!(decode_frame(&frame[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn bad_encoding_names_are_refused() {
        assert!(encode_frame(1, 0, "", b"").is_err());
        assert!(encode_frame(1, 0, "toolongname", b"").is_err());
        assert!(encode_frame(1, 0, "a b", b"").is_err());
        assert!(encode_frame(1, 0, "msgpack", b"").is_ok());
    }
}
