//! A copy cut short (kill -9 mid-way) resumes: the re-run keeps the files that arrived whole,
//! continues the one cut in the middle, and the peer serves only the remainder. Counted at
//! the source: the peer's sftp-server runs behind `tee`, which writes every byte it serves
//! into a file of its own per session.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;

const MIB: usize = 1 << 20;

struct Peer {
    sshd: Sshd,
    dir: tempfile::TempDir,
    collect: PathBuf,
    target: PathBuf,
    served: PathBuf,
    host: String,
    files: Vec<(&'static str, Vec<u8>)>,
}

impl Peer {
    fn start() -> Peer {
        let dir = tempdir();
        let served = mkdir(&dir.path().join("served"));
        let wrapper = write_script(
            &dir.path().join("counting-sftp-server"),
            &format!(
                "#!/bin/sh\n# Every byte served is also written to a file of this session.\n\
                 /usr/lib/openssh/sftp-server \"$@\" | tee {}/$$\n",
                sh_quote(&p(&served))
            ),
        );
        let sshd =
            Sshd::start_custom(&p(&wrapper), "").expect("OpenSSH (scripts/test installs it)");
        let collect = mkdir(&dir.path().join("collect"));
        let files = vec![
            ("a.tar", random_bytes(12 * MIB, 1)),
            ("b.tar", random_bytes(8 * MIB, 2)),
            ("c.tar", random_bytes(4 * MIB, 3)),
            ("cback.collect", Vec::new()),
        ];
        for (name, bytes) in &files {
            write_file(&collect.join(name), bytes);
        }
        let target = mkdir(&dir.path().join("target"));
        let host = unique_name("resume", dir.path());
        Peer {
            sshd,
            dir,
            collect,
            target,
            served,
            host,
            files,
        }
    }

    fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "stage".into(),
            "--host".into(),
            self.host.clone(),
            "--collect-dir".into(),
            p(&self.collect),
            "--target".into(),
            p(&self.target),
            "--rcp-command".into(),
            self.sshd.rcp_command(),
            "--rsh-command".into(),
            self.sshd.rsh_command(),
            "--lock-dir".into(),
            p(&self.dir.path().join("locks")),
        ];
        args.extend(extra.iter().map(|arg| arg.to_string()));
        args
    }

    /// The arguments of a `run` of a pool of this one peer for `date`.
    fn run_args(&self, date: &str, extra: &[&str]) -> Vec<String> {
        let staging = mkdir(&self.dir.path().join("staging"));
        let config = self.dir.path().join("pool.toml");
        write_file(
            &config,
            (toml_dirs(&staging, self.dir.path(), &self.dir.path().join("locks"))
                + &remote_peer_toml(
                    &self.host,
                    &self.collect,
                    &commands_toml(&self.sshd.rcp_command(), &self.sshd.rsh_command()),
                ))
                .as_bytes(),
        );
        let mut args: Vec<String> = vec!["run".into(), "--config".into(), p(&config)];
        args.extend(["--date".into(), date.into()]);
        args.extend(extra.iter().map(|arg| arg.to_string()));
        args
    }

    /// The dir a cut copy keeps its files in.
    fn kept(&self) -> PathBuf {
        self.kept_in(&self.target)
    }

    fn kept_in(&self, target: &Path) -> PathBuf {
        let kept: Vec<_> = std::fs::read_dir(target)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| {
                path.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(".peerstage-partial-")
            })
            .collect();
        assert_eq!(kept.len(), 1, "one kept dir in {}", p(target));
        kept[0].join("files")
    }

    /// Starts a stage held to 4 MiB/s and kills it (-9) once `at` bytes have arrived.
    fn cut_at(&self, at: u64) -> u64 {
        self.cut(&self.args(&["--bwlimit", "4MiB/s"]), &self.target, at)
    }

    /// Starts peerstage with `args` (a copy held to a rate) and kills it (-9) once `at` bytes
    /// have arrived in the kept dir in `target`.
    fn cut(&self, args: &[String], target: &Path, at: u64) -> u64 {
        let mut child: Child = peerstage()
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let arrived = arrived(target);
            if arrived >= at {
                break;
            }
            assert!(
                Instant::now() < until,
                "only {arrived} bytes arrived in 30 s"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "the limited copy ended before the cut"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let kept = arrived(target);
        let total = self.total();
        assert!(
            kept < total,
            "the cut came too late: {kept} of {total} bytes"
        );
        kept
    }

    /// Since `before` (what `served` said then), the peer served what was not `kept` and
    /// little more: SFTP framing adds 13 bytes per 32 KiB read, and the listing a little.
    fn assert_served_only_the_remainder(&self, before: u64, kept: u64) {
        let served = self.served() - before;
        let remainder = self.total() - kept;
        assert!(
            served >= remainder && served <= remainder + 256 * 1024,
            "the re-run served {served} bytes; {remainder} were left of {} ({kept} kept)",
            self.total()
        );
    }

    fn total(&self) -> u64 {
        self.files.iter().map(|(_, bytes)| bytes.len() as u64).sum()
    }

    /// Bytes the peer's sftp-servers served so far, all sessions together.
    fn served(&self) -> u64 {
        std::fs::read_dir(&self.served)
            .unwrap()
            .map(|entry| entry.unwrap().metadata().unwrap().len())
            .sum()
    }
}

/// Bytes in the kept dir in `target`, if there is one.
fn arrived(target: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(target) else {
        return 0;
    };
    let mut sum = 0;
    for entry in entries.flatten() {
        if let Ok(files) = std::fs::read_dir(entry.path().join("files")) {
            sum += files
                .flatten()
                .map(|file| file.metadata().map_or(0, |meta| meta.len()))
                .sum::<u64>();
        }
    }
    sum
}

fn set_mtime(path: &Path, seconds_ago: u64) {
    let status = Command::new("touch")
        .arg("-d")
        .arg(format!("@{}", now_seconds() - seconds_ago))
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn a_cut_copy_resumes_and_the_peer_serves_only_the_remainder() {
    let peer = Peer::start();
    let kept = peer.cut_at(10 * MIB as u64);
    let kept_files = peer.kept();
    assert_eq!(mode_of(kept_files.parent().unwrap()) & 0o777, 0o700);
    assert!(
        kept_files
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&format!(".peerstage-partial-{}-", peer.host)),
        "named for the peer and the day"
    );
    // Nothing under a final name yet: staging is all or nothing.
    assert_eq!(
        list_dir(&peer.target).len(),
        1,
        "{:?}",
        list_dir(&peer.target)
    );

    let before = peer.served();
    let out = ps(&peer.args(&["-v"]));
    out.expect_code(0, "the re-run stages");
    out.expect_stderr_contains("resuming", "the re-run says it resumes");
    peer.assert_served_only_the_remainder(before, kept);
    assert_staged_exactly(&peer.target, &peer.files);
}

#[test]
fn a_file_changed_on_the_peer_since_the_cut_is_copied_again() {
    let peer = Peer::start();
    peer.cut_at(6 * MIB as u64);
    // Whatever of it arrived, whole or in part, was of the earlier version.
    let mut files = peer.files.clone();
    for (name, bytes) in files.iter_mut() {
        if name.ends_with(".tar") {
            bytes[0] ^= 0xff;
            write_file(&peer.collect.join(*name), &*bytes);
            set_mtime(&peer.collect.join(*name), 10);
        }
    }
    ps(&peer.args(&[])).expect_code(0, "the re-run stages");
    assert_staged_exactly(&peer.target, &files);
}

#[test]
fn sha256_verification_covers_a_resumed_file_whole() {
    let peer = Peer::start();
    peer.cut_at(14 * MIB as u64);
    // A file that arrived whole (the files are read one after another, the first of them
    // at most 12 MiB): spoil a byte of it here, size and record unchanged, as a bad disk would.
    let kept = peer.kept();
    let (name, _) = peer
        .files
        .iter()
        .find(|(name, bytes)| {
            !bytes.is_empty()
                && std::fs::metadata(kept.join(name))
                    .is_ok_and(|meta| meta.len() == bytes.len() as u64)
        })
        .expect("a file arrived whole before the cut");
    let spoiled = kept.join(name);
    let mut bytes = std::fs::read(&spoiled).unwrap();
    bytes[5] ^= 1;
    std::fs::write(&spoiled, &bytes).unwrap();

    let out = ps(&peer.args(&["--verify", "sha256"]));
    out.expect_code(1, "the spoiled file fails verification")
        .expect_stderr_line_with(&[name, "SHA-256 differs", "nothing staged"], "says which");
    assert!(
        list_dir(&peer.target).is_empty(),
        "nothing staged, nothing kept"
    );
    ps(&peer.args(&["--verify", "sha256"])).expect_code(0, "then copied whole again");
    assert_staged_exactly(&peer.target, &peer.files);
}

#[test]
fn a_cut_run_keeps_its_copy_for_the_runs_date_and_a_rerun_for_that_date_resumes() {
    let peer = Peer::start();
    // Not today: a run re-done on a later day with --date must find what its cut kept.
    let date = "2026-11-30";
    let daily = peer.dir.path().join("staging/2026/11/30").join(&peer.host);
    let kept = peer.cut(
        &peer.run_args(date, &["--bwlimit", "4MiB/s"]),
        &daily,
        10 * MIB as u64,
    );
    let kept_dir = peer.kept_in(&daily);
    assert_eq!(
        kept_dir
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy(),
        format!(".peerstage-partial-{}-{date}", peer.host),
        "named for the peer and the run's date"
    );

    let before = peer.served();
    let out = ps(&peer.run_args(date, &["-v"]));
    out.expect_code(0, "the re-run of that date stages");
    out.expect_stderr_contains("resuming", "the re-run says it resumes");
    peer.assert_served_only_the_remainder(before, kept);
    assert_staged_exactly(&daily, &peer.files);
}
