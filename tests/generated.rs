//! The man page and completions are generated from the one CLI definition and checked in;
//! these tests fail when the checked-in copies are stale, or the man page has roff warnings.

use std::path::Path;
use std::process::Command;

#[test]
fn checked_in_man_page_and_completions_are_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stale = Vec::new();
    for (relative, expected) in peerstage::docs::generate() {
        let actual = std::fs::read(root.join(&relative)).unwrap_or_default();
        if actual != expected {
            stale.push(relative.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale generated files: {}; regenerate them with `cargo run -- generate` and commit",
        stale.join(", ")
    );
}

#[test]
fn man_page_renders_without_warnings() {
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("man/peerstage.1");
    let output = match Command::new("man")
        .args(["--warnings", "-l"])
        .arg(&page)
        .env("MANWIDTH", "80")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
    {
        Ok(output) => output,
        Err(err) => {
            eprintln!("skipping: man is not installed ({err})");
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "man failed: {stderr}");
    assert!(
        stderr.trim().is_empty(),
        "man --warnings printed:\n{stderr}"
    );
    // Without a terminal, man shows bold as overstrike ("N\x08N"): keep the last of each pair.
    let text: String = String::from_utf8_lossy(&output.stdout)
        .split('\x08')
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part
            } else {
                part.get(1..).unwrap_or("")
            }
        })
        .collect();
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "COMMANDS",
        "CONFIGURATION",
        "EXIT STATUS",
        "ENVIRONMENT",
        "FILES",
        "EXAMPLES",
        "SEE ALSO",
    ] {
        assert!(text.contains(section), "man page lacks a {section} section");
    }
}
