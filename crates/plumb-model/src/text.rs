//! Untrusted text made safe to print on a terminal.
//!
//! Run names, tags, host names, commands and messages come from any node
//! with an agent token and from the programs plumb records. Printed raw,
//! an `ESC ]0;` sequence retitles the terminal window, `ESC [2J` clears
//! it, `ESC ]52;` writes the clipboard. Every table and `plumb show`
//! passes such text through [`escape_controls`].

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
}
