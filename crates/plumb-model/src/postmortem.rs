//! Post-mortems: the frames of an uncaught exception with each frame's
//! local variables, written by the Python hook `plumb run` puts on the
//! child's path (see `plumb-record`'s `postmortem` module) and kept with
//! the run, so the state a program died in can be read the next morning
//! without a debugger having been attached.
//!
//! The hook writes one JSON object per line; [`parse`] reads them with
//! every size bounded here as well as in the hook, since the file is
//! written by the program under test and may be anything.

use serde::{Deserialize, Serialize};

/// One uncaught exception of one process, with locals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PostMortem {
    /// The process it happened in.
    #[serde(default)]
    pub pid: u32,
    /// Where in that process: `main thread`, `thread NAME`, `process NAME`
    /// (a multiprocessing child), `pool worker` (a task of a pool).
    #[serde(default)]
    pub origin: String,
    /// The exception's type, qualified (`ValueError`, `mymod.Error`).
    #[serde(default)]
    pub kind: String,
    /// Its message.
    #[serde(default)]
    pub message: String,
    /// Frames, outermost first, as in a traceback.
    #[serde(default)]
    pub frames: Vec<LocalsFrame>,
    /// Frames left out (only the innermost are kept).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub frames_omitted: u32,
}

/// One frame of a post-mortem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LocalsFrame {
    /// Source file.
    #[serde(default)]
    pub file: String,
    /// Line being executed.
    #[serde(default)]
    pub line: u32,
    /// Function.
    #[serde(default)]
    pub function: String,
    /// Local variables, each with its value's `repr`, bounded in size and
    /// depth (and redacted once recorded, like the environment).
    #[serde(default)]
    pub locals: Vec<Local>,
}

/// A local variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Local {
    /// Its name.
    pub name: String,
    /// Its value's `repr`, shortened.
    pub value: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The most post-mortems kept for one run (a pool of 64 workers failing
/// alike need not store 64 copies).
pub const MAX_POSTMORTEMS: usize = 16;
/// The most frames kept of one exception (the innermost).
pub const MAX_FRAMES: usize = 40;
/// The most locals kept of one frame.
pub const MAX_LOCALS: usize = 50;
/// The longest value kept, in characters.
pub const MAX_VALUE_CHARS: usize = 400;
/// The longest name, message, file or function kept, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;

/// Reads the hook's lines. Lines that do not parse are skipped (counted in
/// the second value) rather than failing the run's record; everything is
/// cut to the bounds above.
pub fn parse(text: &str) -> (Vec<PostMortem>, usize) {
    let mut out = Vec::new();
    let mut bad = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(mut pm) = serde_json::from_str::<PostMortem>(line) else {
            bad += 1;
            continue;
        };
        if out.len() == MAX_POSTMORTEMS {
            continue;
        }
        bound(&mut pm);
        out.push(pm);
    }
    (out, bad)
}

fn bound(pm: &mut PostMortem) {
    cut(&mut pm.origin, MAX_TEXT_CHARS);
    cut(&mut pm.kind, MAX_TEXT_CHARS);
    cut(&mut pm.message, MAX_TEXT_CHARS);
    if pm.frames.len() > MAX_FRAMES {
        let extra = pm.frames.len() - MAX_FRAMES;
        pm.frames.drain(..extra);
        pm.frames_omitted = pm.frames_omitted.saturating_add(extra as u32);
    }
    for f in &mut pm.frames {
        cut(&mut f.file, MAX_TEXT_CHARS);
        cut(&mut f.function, MAX_TEXT_CHARS);
        f.locals.truncate(MAX_LOCALS);
        for l in &mut f.locals {
            cut(&mut l.name, MAX_TEXT_CHARS);
            cut(&mut l.value, MAX_VALUE_CHARS);
        }
    }
}

/// Cuts `s` to at most `max` characters, marking the cut with `...`.
fn cut(s: &mut String, max: usize) {
    if let Some((i, _)) = s.char_indices().nth(max) {
        s.truncate(i);
        s.push_str("...");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_bounded_and_bad_ones_counted() {
        let long = "x".repeat(MAX_VALUE_CHARS * 3);
        let frames: Vec<String> = (0..MAX_FRAMES + 5)
            .map(|i| {
                format!(
                    r#"{{"file":"a.py","line":{i},"function":"f{i}","locals":[{{"name":"v","value":"{long}"}}]}}"#
                )
            })
            .collect();
        let good = format!(
            r#"{{"pid":7,"origin":"main thread","kind":"ValueError","message":"boom","frames":[{}]}}"#,
            frames.join(",")
        );
        let text = format!("{good}\nnot json\n\n{good}\n");
        let (pms, bad) = parse(&text);
        assert_eq!((pms.len(), bad), (2, 1));
        let pm = &pms[0];
        assert_eq!(pm.frames.len(), MAX_FRAMES);
        assert_eq!(pm.frames_omitted, 5);
        assert_eq!(pm.frames[0].function, "f5", "the innermost frames are kept");
        assert_eq!(
            pm.frames[0].locals[0].value.chars().count(),
            MAX_VALUE_CHARS + 3
        );
        let many: String = (0..MAX_POSTMORTEMS + 4)
            .map(|_| format!("{good}\n"))
            .collect();
        assert_eq!(parse(&many).0.len(), MAX_POSTMORTEMS);
    }
}
