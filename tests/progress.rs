//! Progress is drawn for a person at a terminal while files are copying, and never into a
//! pipe or a --json run.

mod common;
#[path = "common/hostile_peer.rs"]
mod hostile_peer;

use std::path::PathBuf;
use std::process::Command;

use common::*;

/// A peer over a slow SFTP server (every read answered 15 ms late): a 2 MiB file takes about
/// a second, long enough for the line to be drawn a few times.
struct SlowPeer {
    sshd: Sshd,
    dir: tempfile::TempDir,
    collect: PathBuf,
    host: String,
}

impl SlowPeer {
    fn start() -> SlowPeer {
        let dir = tempdir();
        let wrapper = hostile_peer::wrapper(dir.path(), "slow-read");
        let sshd =
            Sshd::start_custom(&p(&wrapper), "").expect("OpenSSH (scripts/test installs it)");
        let collect = mkdir(&dir.path().join("collect"));
        write_file(&collect.join("big.tar"), random_bytes(2 << 20, 7));
        write_file(&collect.join("cback.collect"), "");
        let host = unique_name("slow", dir.path());
        SlowPeer {
            sshd,
            dir,
            collect,
            host,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Runs `peerstage ARGS` under util-linux `script`, which gives it a pseudo-terminal as cron
/// never does (200 columns wide, so that no line is cut); returns what the terminal got.
fn on_a_terminal(args: &[String]) -> Out {
    let bin = env!("CARGO_BIN_EXE_peerstage");
    let line = std::iter::once(bin.to_string())
        .chain(args.iter().cloned())
        .map(|word| sh_quote(&word))
        .collect::<Vec<_>>()
        .join(" ");
    let line = format!("stty cols 200; exec {line}");
    run(Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_remove("RUST_LOG"))
}

/// The progress lines drawn (each redraw starts with `\r` and a clear to the end of line).
fn drawn_lines(out: &Out) -> Vec<String> {
    out.stdout
        .split('\r')
        .filter_map(|part| part.strip_prefix("\x1b[K"))
        .map(|line| line.trim_end().to_string())
        .filter(|line| line.starts_with('['))
        .collect()
}

fn peer_args(peer: &SlowPeer) -> Vec<String> {
    vec![
        "--host".into(),
        peer.host.clone(),
        "--collect-dir".into(),
        p(&peer.collect),
        "--rcp-command".into(),
        peer.sshd.rcp_command(),
        "--rsh-command".into(),
        peer.sshd.rsh_command(),
    ]
}

#[test]
fn a_stage_on_a_terminal_shows_bytes_moving_while_a_file_copies() {
    let peer = SlowPeer::start();
    let target = mkdir(&peer.path("target"));
    let mut args: Vec<String> = vec!["--lock-dir".into(), p(&peer.path("locks")), "stage".into()];
    args.extend(peer_args(&peer));
    args.extend(["--target".into(), p(&target)]);
    let out = on_a_terminal(&args);
    out.expect_code(0, "stage on a terminal");
    let lines = drawn_lines(&out);
    // Part of the one big file is in, and the line says of how much.
    let partial = lines.iter().find(|line| {
        line.starts_with("[0/1 peers] ")
            && line.contains(" of 2 files, ")
            && line.contains(" of 2.00 MiB")
            && !line.contains(", 0 B of")
            && !line.contains("2.00 MiB of 2.00 MiB")
    });
    assert!(
        partial.is_some(),
        "no line showing part of the file copied: {lines:#?}\n{}",
        out.describe()
    );
    let partial = partial.unwrap();
    assert!(partial.contains("/s"), "no rate: {partial}");
    assert!(partial.contains(" left"), "no time left: {partial}");
    assert!(
        partial.contains(&format!("| {} ", peer.host)),
        "no peer: {partial}"
    );
    assert!(
        out.stdout.contains("staged 2 files (2.00 MiB)"),
        "{}",
        out.describe()
    );
}

#[test]
fn a_run_on_a_terminal_clears_the_line_before_a_message() {
    let peer = SlowPeer::start();
    let staging = mkdir(&peer.path("staging"));
    let waiting = mkdir(&peer.path("waiting"));
    write_samples(&waiting);
    let mut toml = toml_dirs(&staging, &peer.path("work"), &peer.path("locks"));
    toml.push_str(&format!(
        "jobs = 1\n{}{}",
        remote_peer_toml(
            &peer.host,
            &peer.collect,
            &format!(
                "rcp_command = {:?}\nrsh_command = {:?}\n",
                peer.sshd.rcp_command(),
                peer.sshd.rsh_command()
            )
        ),
        local_peer_toml("waiting", &waiting, "")
    ));
    let config = write_file(&peer.path("pool.toml"), toml);
    set_mode(&config, 0o600);
    let out = on_a_terminal(&["run".into(), "--config".into(), p(&config)]);
    out.expect_code(1, "run with a peer not ready");
    let lines = drawn_lines(&out);
    assert!(
        lines.iter().any(|line| line.starts_with("[0/2 peers] ")),
        "{lines:#?}\n{}",
        out.describe()
    );
    // The error of the second peer comes on a line of its own: the progress line was
    // cleared first, so nothing of it is left before the message.
    let error = out
        .stdout
        .lines()
        .find(|line| line.contains("error: peer waiting"))
        .unwrap_or_else(|| panic!("no error line\n{}", out.describe()));
    let error = error.rsplit('\r').next().unwrap_or_default();
    assert!(
        error.starts_with("\x1b[Kpeerstage: error: peer waiting")
            || error.starts_with("peerstage: error: peer waiting"),
        "the message shares its line: {error:?}"
    );
}

#[test]
fn no_progress_into_a_pipe_or_with_json_or_q() {
    let piped = ps(&["run", "--demo"]);
    piped.expect_code(0, "demo run into a pipe");
    assert!(!piped.combined().contains("peers]"), "{}", piped.describe());
    for extra in ["--json", "-q"] {
        let out = on_a_terminal(&["run".into(), "--demo".into(), extra.into()]);
        out.expect_code(0, extra);
        assert!(!out.combined().contains("peers]"), "{}", out.describe());
    }
}
