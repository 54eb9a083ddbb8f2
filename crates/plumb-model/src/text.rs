//! Untrusted text made safe to print on a terminal.
//!
//! Run names, tags, host names, commands and messages come from any node
//! with an agent token and from the programs plumb records. Printed raw,
//! an `ESC ]0;` sequence retitles the terminal window, `ESC [2J` clears
//! it, `ESC ]52;` writes the clipboard. Everything the CLI prints for
//! people goes through an [`Escaping`] writer, so no control character
//! but newline and tab reaches the terminal whatever a command forgets;
//! table cells are also wrapped in [`Cell`], so a value holding a newline
//! cannot forge a row.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `s` with every control character but newline and tab written as an
/// escape (`\r`, `\u{1b}`, ...), so it prints as text and nothing else.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Like [`escape_controls`], for one table cell: newlines and tabs are
/// escaped too, so a value cannot break the table's rows.
pub fn escape_cell(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push_str(&escape_controls(c.encode_utf8(&mut [0; 4]))),
        }
    }
    Cow::Owned(out)
}

/// A `Display` of untrusted text for one table cell: [`escape_cell`].
#[derive(Debug, Clone, Copy)]
pub struct Cell<'a>(pub &'a str);

impl std::fmt::Display for Cell<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad` keeps width and alignment (`{:<20}`) working.
        f.pad(&escape_cell(self.0))
    }
}

/// A writer that passes text through [`escape_controls`]: every control
/// character but newline and tab is written as its escape (`\u{1b}`), so
/// whatever is written to it cannot drive the terminal. Bytes that are
/// not UTF-8 pass as they are (a terminal does not act on them), except
/// C1 controls (U+0080 to U+009F), which are escaped even when a write
/// splits one.
#[derive(Debug)]
pub struct Escaping<W: std::io::Write> {
    inner: W,
    /// The first byte (0xC2) of a two-byte character whose second byte
    /// has not been written yet.
    pending_c2: bool,
}

impl<W: std::io::Write> Escaping<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Escaping<W> {
        Escaping {
            inner,
            pending_c2: false,
        }
    }
}

impl<W: std::io::Write> std::io::Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut out = Vec::with_capacity(buf.len() + 8);
        for &b in buf {
            if std::mem::take(&mut self.pending_c2) {
                if (0x80..0xa0).contains(&b) {
                    out.extend_from_slice(format!("\\u{{{b:x}}}").as_bytes());
                    continue;
                }
                out.push(0xc2);
            }
            match b {
                b'\n' | b'\t' => out.push(b),
                b'\r' => out.extend_from_slice(b"\\r"),
                0..0x20 | 0x7f => {
                    out.extend_from_slice(format!("\\u{{{b:x}}}").as_bytes());
                }
                0xc2 => self.pending_c2 = true,
                _ => out.push(b),
            }
        }
        self.inner.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if std::mem::take(&mut self.pending_c2) {
            self.inner.write_all(&[0xc2])?;
        }
        self.inner.flush()
    }
}

impl<W: std::io::Write> Drop for Escaping<W> {
    fn drop(&mut self) {
        // A lone 0xC2 at the very end is not a control; give it back.
        let _ = std::io::Write::flush(self);
    }
}

/// A field of `/proc/mounts` or `/proc/self/mountinfo` with the kernel's
/// octal escapes (`\040` for a space, `\134` for a backslash) undone; a
/// backslash not followed by three octal digits stays as it is.
pub fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push(
                (b[i + 1] - b'0')
                    .wrapping_mul(64)
                    .wrapping_add((b[i + 2] - b'0') * 8 + (b[i + 3] - b'0')),
            );
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_sequences_print_as_text() {
        let evil = "job\u{1b}]0;pwned\u{7}\u{1b}[2J\u{1b}]52;c;ZXZpbA==\u{7}\rend";
        let safe = escape_controls(evil);
        assert!(!safe.chars().any(char::is_control), "{safe:?}");
        assert_eq!(
            safe,
            "job\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{1b}]52;c;ZXZpbA==\\u{7}\\rend"
        );
        assert!(matches!(escape_controls("plain\ttext\n"), Cow::Borrowed(_)));
        assert_eq!(escape_cell("a\nb\tc"), "a\\nb\\tc");
    }

    #[test]
    fn the_escaping_writer_writes_what_escape_controls_gives() {
        use std::io::Write as _;
        let evil = "job\u{1b}]0;pwned\u{7}\u{1b}[2J é \u{9b}31m\u{7f}\r\tend\n";
        let mut buf = Vec::new();
        {
            let mut w = Escaping::new(&mut buf);
            // Byte by byte, so a C1 control is split across writes.
            for b in evil.as_bytes() {
                w.write_all(&[*b]).unwrap();
            }
        }
        assert_eq!(String::from_utf8(buf).unwrap(), escape_controls(evil));
        let mut buf = Vec::new();
        let title = "a\u{1b}[2J";
        writeln!(Escaping::new(&mut buf), "{title}|{:<6}|", Cell("x\ny")).unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), "a\\u{1b}[2J|x\\ny  |\n");
    }

    #[test]
    fn mount_fields_lose_their_octal_escapes_and_nothing_else() {
        assert_eq!(unescape_octal("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_octal("/x\\134y\\011z"), "/x\\y\tz");
        assert_eq!(unescape_octal("/é\\0"), "/é\\0", "too short: kept");
        assert_eq!(unescape_octal("\\é12"), "\\é12", "not digits, no panic");
        assert_eq!(
            unescape_octal("\\777"),
            "\u{fffd}",
            "past a byte: still no panic"
        );
    }
}
