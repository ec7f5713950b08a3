//! The remote side of ssh: whatever login shell the peer's account has reads the command
//! line we send (`$SHELL -c LINE`). Every word is quoted so that sh, dash, bash, zsh, fish
//! and the csh family all read it as written: runs of plain characters in single quotes,
//! and `'`, `\` and `!` outside them, backslashed (fish takes `\'` and `\\` as escapes
//! inside single quotes; csh expands `!` history even there). A newline cannot be carried
//! to a csh at all (it ends the command inside quotes too), so a word with one is refused
//! when the peer's login shell is a csh.
//!
//! Output of ours that we read back (the probe, the listing) follows a marker, so a login
//! banner printed before it (`echo Welcome` in a .bashrc) changes nothing.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use crate::peer::staging::Listed;

/// The family of a login shell, for the one thing quoting cannot do for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// sh, dash, bash, zsh, ksh, fish... and whatever we cannot tell.
    Other,
    /// csh and tcsh: no newline inside a word.
    Csh,
}

impl Family {
    /// The family of the shell at `path` (the peer's `$SHELL`).
    pub fn of(path: &str) -> Family {
        match path.trim().rsplit('/').next() {
            Some("csh" | "tcsh" | "bsd-csh") => Family::Csh,
            _ => Family::Other,
        }
    }
}

/// One word, quoted for any login shell (see the module comment).
pub fn quote(word: &str) -> String {
    if word.is_empty() {
        return "''".to_string();
    }
    let mut out = String::with_capacity(word.len() + 2);
    let mut quoted = false;
    for c in word.chars() {
        if matches!(c, '\'' | '\\' | '!') {
            if quoted {
                out.push('\'');
                quoted = false;
            }
            out.push('\\');
            out.push(c);
        } else {
            if !quoted {
                out.push('\'');
                quoted = true;
            }
            out.push(c);
        }
    }
    if quoted {
        out.push('\'');
    }
    out
}

/// A command line for the peer's login shell, every word arriving as one argument; the
/// word a csh cannot carry, if there is one.
pub fn command_line<S: AsRef<str>>(words: &[S], family: Family) -> Result<String, String> {
    if family == Family::Csh {
        if let Some(word) = words.iter().find(|word| word.as_ref().contains('\n')) {
            return Err(word.as_ref().to_string());
        }
    }
    Ok(words
        .iter()
        .map(|word| quote(word.as_ref()))
        .collect::<Vec<_>>()
        .join(" "))
}

/// What answers whether a peer runs our commands, and with which login shell. Sent as it is
/// (its `"$SHELL"` must expand); every shell above reads it the same way.
pub const PROBE: &str = r#"printf 'peerstage-probe-ok %s\n' "$SHELL""#;
const PROBE_MARKER: &str = "peerstage-probe-ok ";

/// The login shell the probe found, if the probe ran (a line of its own, banners or not).
pub fn probe_answer(stdout: &[u8]) -> Option<Family> {
    String::from_utf8_lossy(stdout)
        .lines()
        .find_map(|line| line.strip_prefix(PROBE_MARKER).map(Family::of))
}

/// What the listing prints before its records.
const LISTING_MARKER: &[u8] = b"peerstage-verify-1\0";

/// The listing of the collect dir the way scp's `*` sees it: every non-hidden entry that is
/// (or links to) a regular file, with its size and, for sha256, its digest. NUL-separated,
/// after a marker, so that any name survives, a banner is skipped, and a peer that does
/// not run our command (an sftp-only account) is told from one that failed.
pub fn listing_words(collect_dir: &str, sha256: bool) -> Vec<String> {
    // GNU find lists a directory in one process; elsewhere, and for sha256, a loop.
    const SCRIPT: &str = "cd -- \"$1\" || exit 3; \
        printf 'peerstage-verify-1\\000'; \
        if [ \"$2\" != sha256 ] && find . -maxdepth 0 -printf '' >/dev/null 2>&1; then \
        exec find -L . -mindepth 1 -maxdepth 1 ! -name '.*' -type f -printf '%s - %f\\000'; fi; \
        if [ \"$2\" = sha256 ]; then if command -v sha256sum >/dev/null 2>&1; then H=sha256sum; else H='shasum -a 256'; fi; fi; \
        for f in *; do if [ -f \"$f\" ]; then \
        s=$(wc -c < \"$f\") || exit 4; \
        if [ \"$2\" = sha256 ]; then h=$($H < \"$f\") || exit 5; h=${h%% *}; else h=-; fi; \
        printf '%s %s %s\\000' $s \"$h\" \"$f\"; fi; done";
    let mode = if sha256 { "sha256" } else { "size" };
    ["sh", "-c", SCRIPT, "sh", collect_dir, mode]
        .map(str::to_string)
        .to_vec()
}

/// Why a listing's output is not a listing.
#[derive(Debug, PartialEq, Eq)]
pub enum Unreadable {
    /// No marker: the peer did not run the command.
    NotRun,
    /// More than `max_entries` records.
    TooMany,
    /// A record that is not `size digest name`.
    Garbled,
}

/// Reads the output of the listing command.
pub fn parse_listing(stdout: &[u8], max_entries: u64) -> Result<Listed, Unreadable> {
    let start = stdout
        .windows(LISTING_MARKER.len())
        .position(|window| window == LISTING_MARKER)
        .ok_or(Unreadable::NotRun)?;
    let mut listed = Listed::new();
    for record in stdout[start + LISTING_MARKER.len()..]
        .split(|&byte| byte == 0)
        .filter(|record| !record.is_empty())
    {
        if listed.len() as u64 >= max_entries {
            return Err(Unreadable::TooMany);
        }
        let mut fields = record.splitn(3, |&byte| byte == b' ');
        let (Some(size), Some(digest), Some(name)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(Unreadable::Garbled);
        };
        let size: u64 = std::str::from_utf8(size)
            .ok()
            .and_then(|size| size.parse().ok())
            .ok_or(Unreadable::Garbled)?;
        let digest = (digest != b"-").then(|| digest.to_vec());
        listed.insert(OsString::from_vec(name.to_vec()), (size, digest));
    }
    Ok(listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: [&str; 14] = [
        "!hist",
        "a b",
        "it's",
        "back\\slash",
        "$HOME",
        "`id`",
        "*",
        "~",
        "{a,b}",
        ";",
        "",
        "%x",
        "=ls",
        "tab\there",
    ];

    /// The words arrive intact through every shell installed here (sh always; dash, bash,
    /// fish, tcsh, csh when present: scripts/test installs fish and tcsh).
    #[test]
    fn every_word_arrives_as_written_through_every_shell() {
        let line = command_line(&HOSTILE, Family::Other).unwrap();
        let script = format!("printf '%s\\0' {line}");
        let expected: Vec<u8> = HOSTILE
            .iter()
            .flat_map(|w| [w.as_bytes(), b"\0"].concat())
            .collect();
        for shell in [
            "/bin/sh",
            "/bin/dash",
            "/bin/bash",
            "/usr/bin/fish",
            "/usr/bin/tcsh",
            "/bin/csh",
        ] {
            if !std::path::Path::new(shell).exists() {
                continue;
            }
            let out = std::process::Command::new(shell)
                .arg("-c")
                .arg(&script)
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&expected),
                "{shell}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn a_newline_is_refused_only_for_a_csh() {
        let words = ["printf", "a\nb"];
        assert_eq!(command_line(&words, Family::Csh), Err("a\nb".to_string()));
        assert!(command_line(&words, Family::Other).is_ok());
        assert_eq!(Family::of("/usr/bin/tcsh"), Family::Csh);
        assert_eq!(Family::of("/bin/csh\n"), Family::Csh);
        assert_eq!(Family::of("/usr/bin/fish"), Family::Other);
        assert_eq!(Family::of(""), Family::Other);
    }

    #[test]
    fn the_probe_is_found_after_a_banner() {
        assert_eq!(
            probe_answer(b"Welcome to peer\npeerstage-probe-ok /usr/bin/tcsh\n"),
            Some(Family::Csh)
        );
        assert_eq!(
            probe_answer(b"This service allows sftp connections only.\n"),
            None
        );
    }

    #[test]
    fn a_listing_is_read_after_a_banner_and_bounded() {
        let out = b"Welcome\npeerstage-verify-1\x003 - a b\x00\x0012 ab12 c\nd\x00";
        let listed = parse_listing(out, 10).unwrap();
        assert_eq!(listed[&OsString::from("a b")], (3, None));
        assert_eq!(
            listed[&OsString::from("c\nd")],
            (12, Some(b"ab12".to_vec()))
        );
        assert_eq!(parse_listing(out, 1), Err(Unreadable::TooMany));
        assert_eq!(parse_listing(b"refused", 10), Err(Unreadable::NotRun));
        assert_eq!(
            parse_listing(b"peerstage-verify-1\x00x - a\x00", 10),
            Err(Unreadable::Garbled)
        );
    }
}
