//! The job report of a pool run: per peer a Bacula-style status, files, bytes and seconds.
//! The same data is printed as a table for people, as JSON with `--json`, and written as a
//! JSON file into the daily dir.

use std::fmt::Write as _;

use serde::Serialize;

use crate::escape::escape;
use crate::units;

/// A peer's outcome, with Bacula's job status letters where one fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PeerStatus {
    /// T: staged, verified and marked.
    Completed,
    /// E: reached, but something failed (copy, indicator, managed action, hook).
    Error,
    /// f: fatal: the peer could not be reached, or could not even be set up.
    Fatal,
    /// A: canceled (a run-start hook failed, or the run was interrupted).
    Canceled,
    /// N: the collect indicator was not there.
    NotReady,
    /// S: skipped, because a pre-peer hook failed.
    Skipped,
    /// C: created, not run: a dry run printed what it would do, and probed nothing.
    DryRun,
}

impl PeerStatus {
    pub fn letter(self) -> char {
        match self {
            PeerStatus::Completed => 'T',
            PeerStatus::Error => 'E',
            PeerStatus::Fatal => 'f',
            PeerStatus::Canceled => 'A',
            PeerStatus::NotReady => 'N',
            PeerStatus::Skipped => 'S',
            PeerStatus::DryRun => 'C',
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            PeerStatus::Completed => "completed",
            PeerStatus::Error => "terminated with errors",
            PeerStatus::Fatal => "fatal error",
            PeerStatus::Canceled => "canceled",
            PeerStatus::NotReady => "not ready",
            PeerStatus::Skipped => "skipped",
            PeerStatus::DryRun => "not run (dry run)",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerResult {
    pub peer: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub status: char,
    pub status_word: &'static str,
    /// The failure does not fail the run (the peer's ignore-failure mode says so).
    pub ignored: bool,
    pub files: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// The rate the peer's bytes came at, over its whole time (connecting and checking too).
    pub bytes_per_second: f64,
    /// The tightest bandwidth limit its copy was held to (its own or the run's), if any.
    pub bwlimit_bytes_per_second: Option<u64>,
    pub target_dir: String,
    /// Entries of the collect dir that were not staged.
    pub skipped_entries: Vec<String>,
    /// How the staged files were checked against the peer's (size, sha256, none, skipped...).
    pub verified: String,
    /// The error, one line, when there was one.
    pub message: Option<String>,
    #[serde(skip)]
    pub outcome: PeerStatus,
}

impl PeerResult {
    pub fn new(peer: &str, kind: &'static str, target_dir: String) -> PeerResult {
        PeerResult {
            peer: peer.to_string(),
            kind,
            status: PeerStatus::Completed.letter(),
            status_word: PeerStatus::Completed.word(),
            ignored: false,
            files: 0,
            bytes: 0,
            seconds: 0.0,
            bytes_per_second: 0.0,
            bwlimit_bytes_per_second: None,
            target_dir,
            skipped_entries: Vec::new(),
            verified: String::new(),
            message: None,
            outcome: PeerStatus::Completed,
        }
    }

    pub fn set_status(&mut self, status: PeerStatus) {
        self.outcome = status;
        self.status = status.letter();
        self.status_word = status.word();
    }

    /// Its time, and the rate that makes.
    pub fn set_seconds(&mut self, seconds: f64) {
        self.seconds = seconds;
        self.bytes_per_second = per_second(self.bytes, seconds);
    }

    /// Whether this peer makes the run fail.
    pub fn fails_run(&self) -> bool {
        !matches!(self.outcome, PeerStatus::Completed | PeerStatus::DryRun) && !self.ignored
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    pub started: String,
    pub finished: String,
    pub date: String,
    pub full: bool,
    pub config: String,
    pub staging_dir: String,
    pub daily_dir: String,
    pub dry_run: bool,
    /// T when every peer completed or was ignored, E otherwise, A when canceled.
    pub status: char,
    pub status_word: &'static str,
    pub exit_code: i32,
    pub files: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// The rate of the whole run: its bytes over its time.
    pub bytes_per_second: f64,
    /// The limit all peers were held to together, if any.
    pub bwlimit_bytes_per_second: Option<u64>,
    pub peers: Vec<PeerResult>,
}

/// Bytes over seconds, 0 for no time.
pub fn per_second(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / seconds
    } else {
        0.0
    }
}

/// `9.98 MiB/s`, and with a limit `9.98 MiB/s (limit 10.0 MiB/s)`; `-` when nothing moved.
pub fn rate_text(bytes_per_second: f64, limit: Option<u64>) -> String {
    let rate = if bytes_per_second >= 1.0 {
        format!("{}/s", units::size(bytes_per_second as u64))
    } else {
        "-".to_string()
    };
    match limit {
        Some(limit) => format!("{rate} (limit {}/s)", units::size(limit)),
        None => rate,
    }
}

impl JobReport {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|err| format!("{{\"error\": \"{err}\"}}"))
    }

    /// A table for people, one line per peer, then the totals.
    pub fn to_table(&self) -> String {
        let width = self
            .peers
            .iter()
            .map(|p| p.peer.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<width$}  ST  {:<22}  {:>8}  {:>10}  {:>8}  RATE",
            "PEER", "STATUS", "FILES", "SIZE", "SECONDS"
        );
        for peer in &self.peers {
            let word = if peer.ignored && peer.outcome != PeerStatus::Completed {
                format!("{} (ignored)", peer.status_word)
            } else {
                peer.status_word.to_string()
            };
            let _ = writeln!(
                out,
                "{:<width$}  {}   {:<22}  {:>8}  {:>10}  {:>8.1}  {}",
                escape(&peer.peer),
                peer.status,
                word,
                peer.files,
                units::size(peer.bytes),
                peer.seconds,
                rate_text(peer.bytes_per_second, peer.bwlimit_bytes_per_second)
            );
        }
        let _ = writeln!(
            out,
            "run {} {}: {} ({}), {}, {}, {:.1} s, {}{}",
            self.date,
            escape(&self.daily_dir),
            self.status,
            self.status_word,
            units::count(self.files, "file"),
            units::size(self.bytes),
            self.seconds,
            rate_text(self.bytes_per_second, self.bwlimit_bytes_per_second),
            if self.dry_run {
                " (dry run: nothing changed)"
            } else {
                ""
            }
        );
        // A message may quote what a peer said: escaped, so that it stays one line and
        // cannot pass for a line of the table. It names its peer already.
        for message in self.peers.iter().filter_map(|peer| peer.message.as_deref()) {
            let _ = writeln!(out, "  {}", escape(message));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> JobReport {
        let mut ok = PeerResult::new("db1", "remote", "/s/2026/11/22/db1".into());
        ok.files = 3;
        ok.bytes = 300;
        ok.set_seconds(0.5);
        let mut down = PeerResult::new("web1", "remote", "/s/2026/11/22/web1".into());
        down.set_status(PeerStatus::Fatal);
        down.message = Some("peer web1: Connection refused".into());
        JobReport {
            started: "2026-11-22T02:00:00Z".into(),
            finished: "2026-11-22T02:00:01Z".into(),
            date: "2026-11-22".into(),
            full: false,
            config: "/etc/cback3.conf".into(),
            staging_dir: "/s".into(),
            daily_dir: "/s/2026/11/22".into(),
            dry_run: false,
            status: 'E',
            status_word: PeerStatus::Error.word(),
            exit_code: 1,
            files: 3,
            bytes: 300,
            seconds: 1.0,
            bytes_per_second: 300.0,
            bwlimit_bytes_per_second: Some(10 << 20),
            peers: vec![ok, down],
        }
    }

    #[test]
    fn json_has_letters_and_words() {
        let json: serde_json::Value = serde_json::from_str(&report().to_json()).unwrap();
        assert_eq!(json["peers"][0]["status"], "T");
        assert_eq!(json["peers"][1]["status"], "f");
        assert_eq!(json["peers"][1]["status_word"], "fatal error");
        assert_eq!(json["exit_code"], 1);
        assert_eq!(json["bwlimit_bytes_per_second"], 10 << 20);
        assert_eq!(json["peers"][0]["bytes_per_second"], 600.0);
        assert!(json["peers"][0]["bwlimit_bytes_per_second"].is_null());
    }

    #[test]
    fn the_table_shows_each_rate_and_the_limit() {
        let table = report().to_table();
        assert!(table.contains("  600 B/s\n"), "{table}");
        assert!(
            table.contains(", 1.0 s, 300 B/s (limit 10.0 MiB/s)\n"),
            "{table}"
        );
        assert_eq!(rate_text(0.0, None), "-");
    }

    #[test]
    fn table_names_each_peer_and_its_error() {
        let table = report().to_table();
        assert!(table.contains("db1   T   completed"), "{table}");
        assert!(
            table.contains("\n  peer web1: Connection refused\n"),
            "{table}"
        );
        assert!(
            !table.contains("web1: peer web1"),
            "the peer named twice: {table}"
        );
    }

    #[test]
    fn a_message_from_a_peer_stays_one_line_without_terminal_control() {
        let mut report = report();
        report.peers[1].message =
            Some("peer web1: x\npeer web1: staged OK\x1b]0;owned\x07\x1b[2J".into());
        let table = report.to_table();
        assert_eq!(table.lines().count(), 5, "{table}");
        assert!(!table.contains('\x1b'), "{table}");
        assert!(
            table.contains(r"x\npeer web1: staged OK\x1b]0;owned\x07\x1b[2J"),
            "{table}"
        );
    }

    #[test]
    fn ignored_failures_do_not_fail_the_run() {
        let mut peer = PeerResult::new("x", "local", String::new());
        peer.set_status(PeerStatus::NotReady);
        assert!(peer.fails_run());
        peer.ignored = true;
        assert!(!peer.fails_run());
    }
}
