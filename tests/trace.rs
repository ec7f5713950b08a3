//! The trace a nightly run leaves for an admin to find and alert on: a log file, the journal's
//! priorities, a metrics file node_exporter can read, one job report per run, and systemd
//! units that systemd itself accepts.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

/// A pool of one ready local peer and one that is not ready, in a dir of its own.
struct Pool {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Pool {
    fn new(extra: &str) -> Pool {
        Pool::in_dir(tempdir(), extra)
    }

    fn in_dir(dir: tempfile::TempDir, extra: &str) -> Pool {
        let base = dir.path();
        let staging = mkdir(&base.join("staging"));
        let ready = mkdir(&base.join("collect/ready"));
        write_samples(&ready);
        write_file(&ready.join("cback.collect"), "");
        let waiting = mkdir(&base.join("collect/waiting"));
        write_samples(&waiting);
        let mut text = toml_dirs(&staging, &base.join("work"), &base.join("locks"));
        text.push_str(extra);
        text.push_str(&local_peer_toml("ready", &ready, ""));
        text.push_str(&local_peer_toml("waiting", &waiting, ""));
        let config = write_file(&base.join("pool.toml"), text);
        set_mode(&config, 0o600);
        Pool { dir, config }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, extra: &[&str]) -> Out {
        let config = p(&self.config);
        let mut args = vec!["run", "--config", config.as_str(), "--date", "2026-11-21"];
        args.extend_from_slice(extra);
        ps(&args)
    }

    fn daily(&self) -> PathBuf {
        self.path("staging/2026/11/21")
    }
}

#[test]
fn the_log_file_keeps_timestamped_lines_of_every_run_whatever_q_says() {
    let pool = Pool::new("");
    let log = pool.path("peerstage.log");
    pool.run(&["-q", "--log-file", &p(&log)])
        .expect_code(1, "run with a peer not ready");
    pool.run(&["-q", "--log-file", &p(&log)])
        .expect_code(1, "second run");
    let text = fs::read_to_string(&log).expect("the log file");
    let lines: Vec<&str> = text.lines().collect();
    for line in &lines {
        // 2026-12-02T02:30:00Z peerstage[123]: info: ...
        let (stamp, rest) = line.split_once(' ').unwrap_or_default();
        assert!(
            stamp.len() == 20 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
            "line without a UTC timestamp: {line:?}"
        );
        assert!(
            rest.starts_with("peerstage["),
            "line without a pid: {line:?}"
        );
    }
    let count = |needle: &str| lines.iter().filter(|line| line.contains(needle)).count();
    assert_eq!(
        count("info: run of"),
        4,
        "a start and an end line per run:\n{text}"
    );
    assert_eq!(count("started: 2 peers into"), 2, "{text}");
    assert_eq!(count("peer ready: staged"), 2, "{text}");
    assert_eq!(
        count("error: peer waiting: not ready to be staged"),
        2,
        "{text}"
    );
    assert_eq!(mode_of(&log) & 0o777, 0o640, "log file mode");

    // In the config, the same.
    let from_config = pool.path("from-config.log");
    let other = Pool::in_dir(tempdir(), &format!("log_file = {:?}\n", p(&from_config)));
    other.run(&["-q"]).expect_code(1, "run with log_file");
    let text = fs::read_to_string(&from_config).expect("the config's log file");
    assert!(text.contains("peer ready: staged"), "{text}");
}

#[test]
fn a_log_file_is_never_written_through_a_link_or_into_a_fifo() {
    let pool = Pool::new("");
    let victim = write_file(&pool.path("victim"), "precious\n");
    let link = pool.path("link.log");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    pool.run(&["--log-file", &p(&link)])
        .expect_code(2, "log file that is a symlink")
        .expect_one_error_line("log file that is a symlink")
        .expect_stderr_line_with(&["log file", &p(&link), "symbolic link"], "symlink");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(!pool.daily().exists(), "the run went on without its log");

    let fifo = pool.path("fifo.log");
    mkfifo(&fifo);
    pool.run(&["--log-file", &p(&fifo)])
        .expect_code(2, "log file that is a fifo")
        .expect_stderr_line_with(&["log file", "not a regular file"], "fifo");
}

/// Under systemd, JOURNAL_STREAM names stderr's device and inode: lines then carry the
/// priority prefixes of sd-daemon(3) instead of `peerstage: warning:`.
#[test]
fn under_systemd_stderr_lines_carry_journal_priorities() {
    let pool = Pool::new("");
    let stderr_path = pool.path("stderr");
    let run_with = |journal_stream: Option<String>| {
        let stderr = fs::File::create(&stderr_path).unwrap();
        let meta = stderr.metadata().unwrap();
        let mut cmd = peerstage();
        cmd.args(["run", "--config", &p(&pool.config), "--date", "2026-11-21"])
            .stdout(Stdio::null())
            .stderr(stderr);
        match journal_stream {
            Some(value) => cmd.env("JOURNAL_STREAM", value),
            None => cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino())),
        };
        let status = cmd.status().expect("run peerstage");
        assert_eq!(status.code(), Some(1));
        fs::read_to_string(&stderr_path).unwrap()
    };
    let journal = run_with(None);
    assert!(
        journal
            .lines()
            .any(|line| line.starts_with("<3>error: peer waiting: not ready")),
        "{journal}"
    );
    assert!(
        journal.lines().all(|line| line.starts_with('<')),
        "{journal}"
    );
    // A JOURNAL_STREAM inherited from elsewhere (stderr redirected since) is not ours.
    let elsewhere = run_with(Some("1:1".to_string()));
    assert!(
        elsewhere
            .lines()
            .any(|line| line.starts_with("peerstage: error: peer waiting")),
        "{elsewhere}"
    );
}

#[test]
fn every_run_keeps_its_own_report_with_the_absolute_config_path() {
    let pool = Pool::new("");
    let relative = "pool.toml";
    for _ in 0..2 {
        let out = run(peerstage().current_dir(pool.dir.path()).args([
            "run",
            "--config",
            relative,
            "--date",
            "2026-11-21",
        ]));
        out.expect_code(1, "run");
    }
    let reports: Vec<String> = list_dir(&pool.daily())
        .into_iter()
        .filter(|name| name.starts_with("peerstage-report-"))
        .collect();
    assert_eq!(reports.len(), 2, "one report per run: {reports:?}");
    for name in &reports {
        let text = fs::read_to_string(pool.daily().join(name)).unwrap();
        let report: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(report["config"], p(&pool.config), "{name}");
    }
}

/// The metrics file is the Prometheus text format, checked with a real parser (and with
/// promtool too when Debian's prometheus package is installed), and says what happened.
#[test]
fn the_metrics_file_is_valid_prometheus_text_with_the_run_and_its_peers() {
    // A config path with a quote and a backslash in it: label values must be escaped.
    let dir = tempdir();
    let odd = mkdir(&dir.path().join("odd \"dir\\"));
    let pool = Pool::in_dir(tempfile::tempdir_in(&odd).unwrap(), "");
    let metrics = pool.path("peerstage.prom");
    let before = now();
    pool.run(&["--metrics-file", &p(&metrics)])
        .expect_code(1, "run with a peer not ready");
    let text = fs::read_to_string(&metrics).expect("the metrics file");
    assert_eq!(
        mode_of(&metrics) & 0o777,
        0o644,
        "readable by node_exporter"
    );
    let exposition = openmetrics_parser::prometheus::parse_prometheus(&text)
        .unwrap_or_else(|err| panic!("not valid Prometheus text: {err}\n{text}"));
    let value = |name: &str, peer: Option<&str>| -> f64 {
        let family = exposition
            .families
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in\n{text}"));
        let sample = family
            .iter_samples()
            .find(|sample| {
                let labels = sample.get_labelset().expect("labels");
                labels.get_label_value("config") == Some(p(&pool.config).as_str())
                    && peer.is_none_or(|peer| labels.get_label_value("peer") == Some(peer))
            })
            .unwrap_or_else(|| panic!("no sample of {name} for {peer:?} in\n{text}"));
        match &sample.value {
            openmetrics_parser::PrometheusValue::Gauge(gauge) => gauge.as_f64(),
            other => panic!("{name} is not a gauge: {other:?}"),
        }
    };
    assert_eq!(value("peerstage_run_success", None), 0.0);
    let started = value("peerstage_run_start_timestamp_seconds", None);
    let ended = value("peerstage_run_end_timestamp_seconds", None);
    assert!(
        before - 1.0 <= started && started <= ended && ended <= now() + 1.0,
        "{text}"
    );
    assert_eq!(value("peerstage_peer_success", Some("ready")), 1.0);
    assert_eq!(value("peerstage_peer_success", Some("waiting")), 0.0);
    let samples = sample_files();
    assert_eq!(
        value("peerstage_peer_files", Some("ready")),
        samples.len() as f64 + 1.0,
        "the samples and the collect indicator"
    );
    let bytes: usize = samples.iter().map(|(_, data)| data.len()).sum();
    assert_eq!(value("peerstage_peer_bytes", Some("ready")), bytes as f64);
    assert!(text.contains("status=\"N\""), "{text}");

    if let Ok(promtool) = which("promtool") {
        let out = run(Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(fs::File::open(&metrics).unwrap()));
        out.expect_code(0, "promtool check metrics");
    }

    // A second run replaces the file whole, and a dry run leaves it alone.
    let first = fs::read_to_string(&metrics).unwrap();
    // (The local peer that is not ready is still found so: looking changes nothing.)
    let out = pool.run(&["--dry-run", "--metrics-file", &p(&metrics)]);
    out.expect_code(1, "dry run");
    assert!(
        out.stdout.contains("# write the metrics to"),
        "{}",
        out.describe()
    );
    assert_eq!(fs::read_to_string(&metrics).unwrap(), first);
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn which(program: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .ok_or(())
}

/// The units in systemd/ are what systemd accepts: `systemd-analyze verify`, with the
/// ExecStart binary pointed at the one built here, and no warning at all.
#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    needs_tool("/usr/bin/systemd-analyze", "systemd");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempdir();
    let service = fs::read_to_string(repo.join("systemd/peerstage.service")).unwrap();
    assert!(
        service.contains("ExecStart=/usr/bin/peerstage run --config /etc/peerstage/pool.toml"),
        "{service}"
    );
    let here = service.replace("/usr/bin/peerstage", env!("CARGO_BIN_EXE_peerstage"));
    write_file(&dir.path().join("peerstage.service"), here);
    fs::copy(
        repo.join("systemd/peerstage.timer"),
        dir.path().join("peerstage.timer"),
    )
    .unwrap();
    let out = run(Command::new("/usr/bin/systemd-analyze")
        .current_dir(dir.path())
        .args([
            "verify",
            "--man=no",
            "./peerstage.service",
            "./peerstage.timer",
        ]));
    out.expect_code(0, "systemd-analyze verify");
    assert!(
        out.stderr.trim().is_empty(),
        "systemd-analyze warned:\n{}",
        out.describe()
    );
    // The service's command line is one the CLI accepts.
    let exec = service
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .unwrap();
    let words = shell_words::split(exec).unwrap();
    peerstage::cli::command()
        .try_get_matches_from(&words)
        .unwrap_or_else(|err| panic!("ExecStart {exec:?}: {err}"));
}
