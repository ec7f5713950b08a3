//! The man page and completions are generated from the one CLI definition and checked in;
//! these tests fail when the checked-in copies are stale, or the man page has roff warnings.
//! The README's promises name the tests that hold them; a test renamed or split must not
//! leave a promise pointing at nothing.

mod common;

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
    let output = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(&page)
        .env("MANWIDTH", "80")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
        .unwrap_or_else(|err| {
            panic!("man cannot run ({err}): apt-get install man-db (scripts/test does)")
        });
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

/// Every test the README's Guarantees name (a backquoted snake_case name) is a test.
#[test]
fn every_test_the_readme_names_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let guarantees = common::section(&readme, "\n## Guarantees", "\n## ");
    let mut sources = String::new();
    for entry in std::fs::read_dir(root.join("tests")).expect("tests/") {
        let path = entry.expect("a tests/ entry").path();
        if path.extension().is_some_and(|ext| ext == "rs") {
            sources += &std::fs::read_to_string(&path).expect("a test file");
        }
    }
    let named: Vec<&str> = guarantees
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| {
            word.matches('_').count() >= 3
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .collect();
    assert!(named.len() > 20, "only {} test names found", named.len());
    let missing: Vec<&str> = named
        .into_iter()
        .filter(|name| !sources.contains(&format!("fn {name}()")))
        .collect();
    assert!(
        missing.is_empty(),
        "README names tests that do not exist: {missing:?}"
    );
}
