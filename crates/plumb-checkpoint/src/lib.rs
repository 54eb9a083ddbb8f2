/*!
Atomic, checksummed, signal-triggered checkpoints that never restore from a
corrupt file.

A [`Checkpointer`] is the one writer of a checkpoint directory. Opening it
finds the newest valid checkpoint; [`Checkpointer::save`] writes a new one
atomically and keeps the newest three (configurable). A file that is torn,
truncated, bit-flipped or zero-filled is skipped with a warning naming it, and
the previous good one is used instead. An eviction signal (SIGTERM, SIGQUIT or
SIGUSR1 by default) only sets a flag; the program polls it at its safe points,
saves, and exits with [`EXIT_EVICTED`] (75) so that a supervisor knows to
restart it.

```
use plumb_checkpoint::Checkpointer;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct State { next_item: u64, total: u64 }

# let tmp = tempfile::tempdir().unwrap();
# let dir = tmp.path().join("ckpt");
let mut ckpt = Checkpointer::builder(&dir).every_steps(100).open()?;
let mut state: State = ckpt.restore()?.unwrap_or_default();
while state.next_item < 1000 {
    state.total += state.next_item; // the work
    state.next_item += 1;
    // Saves every 100 steps, and saves then exits with code 75 after SIGTERM.
    ckpt.at_safe_point(&state)?;
}
ckpt.save(&state)?;
drop(ckpt);
let again = Checkpointer::builder(&dir).signals(&[]).open()?;
assert_eq!(again.restore::<State>()?, Some(State { next_item: 1000, total: 499500 }));
# Ok::<(), plumb_checkpoint::CheckpointError>(())
```

`examples/evictable.rs` is a complete program to try eviction by hand, and
`plumb checkpoint ls|verify|show DIR` inspects a directory from the shell.
The Python package in `python/plumb` reads and writes the same files.

Any serde format works through the raw-bytes API:
[`Checkpointer::save_bytes`] with an encoding name of your choice, and
[`Checkpointer::restored_bytes`] with [`CheckpointInfo::encoding`].

# Directory layout

| file | what it is |
|---|---|
| `checkpoint-NNNNNNNNNNNNNNNNNNNN.ckpt` | checkpoint with sequence number N (20 zero-padded decimal digits) |
| `.checkpoint-NNNNNNNNNNNNNNNNNNNN.ckpt.tmp` | a save in progress; never read; deleted by the next `open` |
| `.checkpoint.lock` | held with `flock(LOCK_EX)` by the one writer |

Sequence numbers strictly increase (a failed save consumes its number, so
there may be gaps). The newest valid file wins; validity never depends on the
file's modification time.

# File format, version 1

All integers are little-endian. A file is a 48-byte header, the payload, and
a 4-byte trailer:

| offset | size | field |
|---:|---:|---|
| 0 | 8 | magic: the ASCII bytes `PLUMBCKP` |
| 8 | 2 | format version, u16: `1` |
| 10 | 2 | header length, u16: `48` |
| 12 | 4 | flags, u32: reserved, `0` |
| 16 | 8 | sequence number, u64; equals the number in the file name |
| 24 | 8 | time written, i64: nanoseconds since the Unix epoch, UTC |
| 32 | 8 | payload length P, u64 |
| 40 | 8 | payload encoding: 1 to 8 printable ASCII bytes (0x21 to 0x7E), padded with NUL bytes; `json` for the default serde_json encoding, `raw` for opaque bytes |
| 48 | P | payload |
| 48+P | 4 | checksum, u32: CRC-32 of bytes 0 to 48+P (header and payload) |

The checksum is CRC-32 as in zlib, gzip and PNG (IEEE 802.3 polynomial
0x04C11DB7, reflected, initial value and final XOR 0xFFFFFFFF; the CRC of the
ASCII `123456789` is 0xCBF43926). It was chosen over CRC-32C because the
Python side must use the standard library only, where `zlib.crc32` runs at C
speed while a pure-Python CRC-32C would be about a hundred times slower. It
detects every single-bit flip, every burst of up to 32 bits, and any other
corruption with probability 1 - 2^-32; truncation and zero-filling are caught
earlier, by the length and magic checks.

A reader checks, in this order, and reports the first failure (the Python
reader uses the same order and the same names, see [`CorruptKind::code`]):
the file has at least 52 bytes (`too_short`); the magic (`bad_magic`); the
version (`unsupported_version`); the header length, zero flags and a
well-formed encoding field (`bad_header`); the file length is exactly
48 + P + 4 (`length_mismatch`); the checksum (`checksum_mismatch`); and, when
read from a directory, the sequence number matches the file name
(`sequence_mismatch`).

# The save protocol

1. Encode the header with the next sequence number and the current time;
   compute the checksum.
2. Create `.checkpoint-N.ckpt.tmp` in the same directory (`O_EXCL`), write
   header, payload and trailer, `fsync` it.
3. `rename` it to `checkpoint-N.ckpt`, then `fsync` the directory.
4. Delete the oldest checkpoint files beyond the newest `keep`.

A crash at any point leaves either the old set of checkpoints or the old set
plus the new one: never a partial file under a checkpoint name. If any step
before the rename fails (a full disk, say), the temporary file is removed, the
error is returned ([`CheckpointError::StorageFull`] for ENOSPC and EDQUOT),
and the previous checkpoints are untouched.
*/
#![deny(missing_docs)]

mod checkpointer;
mod dir;
mod error;
mod format;

pub use checkpointer::{Builder, Checkpointer, DEFAULT_KEEP, DEFAULT_SIGNALS, EXIT_EVICTED};
pub use dir::{
    CheckpointInfo, Entry, FILE_PREFIX, FILE_SUFFIX, LOCK_FILE, Problem, TEMP_PREFIX, TEMP_SUFFIX,
    file_name, inspect, parse_file_name, read, rfc3339,
};
pub use error::CheckpointError;
pub use format::{
    CorruptKind, FORMAT_VERSION, HEADER_LEN, Header, MAGIC, MAX_ENCODING_LEN, TRAILER_LEN,
    decode_frame, encode_frame,
};
