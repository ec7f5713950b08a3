//! Text that a peer controls (file names, SFTP status messages, what a remote command said)
//! is escaped before it reaches a terminal, a log line, the report table or a hook variable:
//! a raw newline would let a peer print a line of its own (`peer evil: staged OK`), a raw ESC
//! would let it drive the administrator's terminal. Control characters are shown the way
//! Rust and C write them (`\n`, `\r`, `\t`, `\x1b`, `\u{202e}`), so every message stays one
//! line and shows what the peer really sent.

use std::borrow::Cow;
use std::fmt;

/// Whether `c` must not reach a terminal as it is: C0 and C1 controls, DEL, and the Unicode
/// marks that reorder how a line is shown (bidirectional overrides and isolates).
pub(crate) fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every control character written as an escape; borrowed when there is none.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

fn push_escaped(out: &mut String, c: char) {
    use std::fmt::Write as _;
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if !needs_escape(c) => out.push(c),
        c if (c as u32) < 0x100 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

/// Shows a value through `escape`, for use in `format!` arguments.
pub struct Escaped<T>(pub T);

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.to_string();
        f.write_str(&escape(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        let text = "peer db1: staged 3 files (données, 12 bytes)";
        assert!(matches!(escape(text), Cow::Borrowed(_)));
    }

    #[test]
    fn control_characters_are_written_as_escapes() {
        assert_eq!(
            escape("a\nb\rc\td\x1b]0;x\x07e\x7f\u{85}"),
            "a\\nb\\rc\\td\\x1b]0;x\\x07e\\x7f\\x85"
        );
        assert_eq!(escape("evil\u{202e}gpj.sh"), "evil\\u{202e}gpj.sh");
        assert_eq!(Escaped("x\ny").to_string(), "x\\ny");
    }

    #[test]
    fn the_result_never_holds_a_control_character() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        assert!(!escape(&all).chars().any(needs_escape));
    }
}
