//! LZ4 blocks through liblz4 (the C library, built from source by
//! `lz4-sys`): it compresses this kind of output about 1.4 times faster
//! than lz4_flex, and compression is most of what recording a flood of
//! output costs.

use super::codec::corrupt;
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
