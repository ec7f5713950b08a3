//! A run's outcome as Prometheus metrics, for node_exporter's textfile collector
//! (`metrics_file`, `--metrics-file`): when the last run started and ended, whether it
//! succeeded, and per peer its status, files, bytes and seconds. Written whole (a temp file
//! renamed into place), so the collector never reads half a file; alert on
//! `peerstage_run_success == 0` or on a `peerstage_run_end_timestamp_seconds` that is old.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{Error, Result};
use crate::fsutil::write_file_atomically;
use crate::ownership::{Mode, Perms};
use crate::report::{JobReport, PeerStatus};

/// The text format (version 0.0.4) of `report`; `started` and `ended` in seconds since the
/// epoch.
pub fn render(report: &JobReport, started: f64, ended: f64) -> String {
    let config = label(&report.config);
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    };
    let run = format!("config=\"{config}\"");
    metric(
        "peerstage_run_start_timestamp_seconds",
        "gauge",
        "When the last run started, in seconds since the epoch.",
        &[(run.clone(), started)],
    );
    metric(
        "peerstage_run_end_timestamp_seconds",
        "gauge",
        "When the last run ended, in seconds since the epoch.",
        &[(run.clone(), ended)],
    );
    metric(
        "peerstage_run_success",
        "gauge",
        "1 when the last run staged every peer whose failure is not ignored, else 0.",
        &[(run.clone(), f64::from(u8::from(report.exit_code == 0)))],
    );
    let peers = |value: &dyn Fn(&crate::report::PeerResult) -> f64| -> Vec<(String, f64)> {
        report
            .peers
            .iter()
            .map(|peer| {
                (
                    format!("config=\"{config}\",peer=\"{}\"", label(&peer.peer)),
                    value(peer),
                )
            })
            .collect()
    };
    metric(
        "peerstage_peer_success",
        "gauge",
        "1 when the peer was staged (status T) in the last run, else 0.",
        &peers(&|peer| f64::from(u8::from(peer.outcome == PeerStatus::Completed))),
    );
    let statuses: Vec<(String, f64)> = report
        .peers
        .iter()
        .map(|peer| {
            (
                format!(
                    "config=\"{config}\",peer=\"{}\",status=\"{}\",status_word=\"{}\"",
                    label(&peer.peer),
                    peer.status,
                    label(peer.status_word)
                ),
                1.0,
            )
        })
        .collect();
    metric(
        "peerstage_peer_status",
        "gauge",
        "The peer's status in the last run (T, E, f, A, N, S, C), as a label; always 1.",
        &statuses,
    );
    metric(
        "peerstage_peer_files",
        "gauge",
        "Files staged from the peer in the last run.",
        &peers(&|peer| peer.files as f64),
    );
    metric(
        "peerstage_peer_bytes",
        "gauge",
        "Bytes staged from the peer in the last run.",
        &peers(&|peer| peer.bytes as f64),
    );
    metric(
        "peerstage_peer_seconds",
        "gauge",
        "Seconds the peer took in the last run.",
        &peers(&|peer| peer.seconds),
    );
    out
}

/// Writes the metrics to `path` whole, readable by the collector (0644).
pub fn write(path: &Path, report: &JobReport, started: f64, ended: f64) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| Error::usage("not a file name").at(path.display()))?;
    write_file_atomically(
        dir,
        name,
        render(report, started, ended).as_bytes(),
        &Perms::default(),
        Mode(0o644),
    )
    .map_err(|cause| Error::failed(format!("metrics file: {cause}")))
}

/// A label value: backslash, double quote and line feed escaped, as the format says.
fn label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
