//! Progress is drawn for a person at a terminal, and never into a pipe or a --json run.

mod common;

use std::process::Command;

use common::*;

#[test]
fn progress_shows_on_a_terminal_only() {
    let bin = env!("CARGO_BIN_EXE_peerstage");
    // util-linux `script` gives the run a pseudo-terminal, as cron never does.
    let on_tty = Command::new("script")
        .args(["-qec", &format!("{bin} run --demo"), "/dev/null"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap_or_else(|err| panic!("cannot run util-linux script (package bsdutils): {err}"));
    let text = String::from_utf8_lossy(&on_tty.stdout);
    assert!(on_tty.status.success(), "{text}");
    assert!(text.contains("[2/2 peers] 7 files, 232 B"), "{text}");

    let piped = ps(&["run", "--demo"]);
    piped.expect_code(0, "demo run into a pipe");
    assert!(!piped.combined().contains("peers]"), "{}", piped.describe());

    let json = run(Command::new("script")
        .args(["-qec", &format!("{bin} run --demo --json"), "/dev/null"])
        .env_remove("RUST_LOG"));
    assert!(!json.combined().contains("peers]"), "{}", json.describe());
}
