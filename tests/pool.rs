//! The pool run (`peerstage run`) and the commands around it, through the binary as users call
//! it: a pool of remote peers (on the private loopback sshd of `common::Sshd`) and local peers,
//! from a `cback3.conf` and from the native TOML; `config show`/`config check`; ignore-failure
//! modes; managed actions; locks; hooks; the job report and `--json`; `--dry-run`; a failing
//! peer among good ones; `status`; and the single-peer subcommands with `--config --peer`.
//!
//! Every test has its own temp dir and, where it needs one, its own sshd. Remote peer names are
//! host names that the harness's client ssh_config (`Host *`, `HostName 127.0.0.1`) sends to
//! loopback. Locks go to a lock dir inside the test's temp dir: `lock_dir` in a native TOML,
//! `--lock-dir` for a `cback3.conf`, which cannot name one.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use common::*;

// ---------------------------------------------------------------------------------------------
// The fixture: a temp dir holding staging dir, collect dirs, working dir and lock dir, plus an
// optional sshd.

struct Fx {
    dir: TempDir,
    sshd: Option<Sshd>,
}

impl Fx {
    /// For pools of local peers only.
    fn local() -> Fx {
        Fx::new(None)
    }

    fn with_sshd() -> Fx {
        Fx::new(Some(Sshd::start().expect(NEEDS_OPENSSH)))
    }

    fn new(sshd: Option<Sshd>) -> Fx {
        let fx = Fx {
            dir: tempdir(),
            sshd,
        };
        mkdir(&fx.staging());
        mkdir(&fx.work());
        fx
    }

    fn base(&self) -> &Path {
        self.dir.path()
    }

    fn staging(&self) -> PathBuf {
        self.base().join("staging")
    }

    fn daily(&self) -> PathBuf {
        self.staging().join(DAY)
    }

    fn work(&self) -> PathBuf {
        self.base().join("work")
    }

    /// Not created: peerstage makes it.
    fn lock_dir(&self) -> PathBuf {
        self.base().join("locks")
    }

    fn sshd(&self) -> &Sshd {
        self.sshd.as_ref().expect("fixture started with an sshd")
    }

    /// A peer name no test running at the same time uses.
    fn unique(&self, prefix: &str) -> String {
        unique_name(prefix, self.base())
    }

    /// A new, empty collect dir.
    fn collect(&self, name: &str) -> PathBuf {
        mkdir(&self.base().join("collect").join(name))
    }

    /// A collect dir with files unique to `name` and the collect indicator: ready to stage.
    fn ready(&self, name: &str) -> PathBuf {
        let dir = self.collect(name);
        fill(&dir, name);
        write_file(&dir.join("cback.collect"), "");
        dir
    }

    /// The native TOML config: top-level settings (with the lock dir in the temp dir),
    /// `[defaults]` pointing remote peers at the sshd, `hooks` lines and the peers.
    fn toml(&self, top_extra: &str, hooks: &str, peers: &[String]) -> String {
        let mut text = format!(
            "{}{top_extra}\n",
            toml_dirs(&self.staging(), &self.work(), &self.lock_dir())
        );
        if let Some(sshd) = &self.sshd {
            text += &format!(
                "[defaults]\nrcp_command = {}\nrsh_command = {}\n\n",
                q(&sshd.rcp_command()),
                q(&sshd.rsh_command())
            );
        }
        if !hooks.is_empty() {
            text += "[hooks]\n";
            text += hooks;
            text += "\n";
        }
        for peer in peers {
            text += peer;
        }
        text
    }

    fn write_config(&self, file: &str, text: &str) -> PathBuf {
        write_file(&self.base().join(file), text)
    }

    /// Where a peer's files go on DATE.
    fn target(&self, peer: &str) -> PathBuf {
        self.daily().join(peer)
    }
}

/// `event = ["cmd", ...]` for the `[hooks]` table.
fn hook(event: &str, commands: &[String]) -> String {
    let quoted: Vec<String> = commands.iter().map(|c| q(c)).collect();
    format!("{event} = [{}]\n", quoted.join(", "))
}

/// Sample files whose bytes differ per peer, plus one file named after the peer.
fn fill(dir: &Path, tag: &str) {
    for (name, mut data) in sample_files() {
        if !data.is_empty() {
            data.extend_from_slice(tag.as_bytes());
        }
        write_file(&dir.join(name), data);
    }
    write_file(&dir.join(format!("id-{tag}.txt")), format!("peer {tag}\n"));
}

/// The regular files at the top level of `dir` (empty when `dir` does not exist), with
/// names as text for the assertions' string literals.
fn files_by_name(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    regular_files(dir)
        .into_iter()
        .map(|(name, data)| (name.to_string_lossy().into_owned(), data))
        .collect()
}

/// Asserts that `target` holds exactly the regular files `expected` (names and bytes).
#[track_caller]
fn assert_same_files(target: &Path, expected: &BTreeMap<String, Vec<u8>>, what: &str) {
    let got = files_by_name(target);
    let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&got),
        names(expected),
        "{what}: file names in {}",
        target.display()
    );
    for (name, data) in expected {
        assert!(
            &got[name] == data,
            "{what}: bytes of {} differ",
            target.join(name).display()
        );
    }
    assert_eq!(
        list_dir(target).len(),
        got.len(),
        "{what}: {} holds something besides regular files",
        target.display()
    );
}

// ---------------------------------------------------------------------------------------------
// Running

/// `peerstage run --config CONFIG --date DATE EXTRA...`
fn run_pool(config: &Path, extra: &[&str]) -> Out {
    let config = p(config);
    let mut args = vec!["run", "--config", config.as_str(), "--date", DATE];
    args.extend_from_slice(extra);
    ps(&args)
}

/// The job reports in the daily dir, one per run, oldest first.
fn report_names(daily: &Path) -> Vec<String> {
    let mut names: Vec<String> = list_dir(daily)
        .into_iter()
        .filter(|name| name.starts_with("peerstage-report-") && name.ends_with(".json"))
        .collect();
    names.sort_by_key(|name| {
        fs::metadata(daily.join(name))
            .and_then(|meta| meta.modified())
            .ok()
    });
    names
}

/// The job report of the latest run in the daily dir.
#[track_caller]
fn report_file(daily: &Path) -> Value {
    let names = report_names(daily);
    let latest = names
        .last()
        .unwrap_or_else(|| panic!("no job report in {}", daily.display()));
    let path = daily.join(latest);
    let text =
        fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("{} is not JSON: {err}\n{text}", path.display()))
}

/// Starts `peerstage ARGS` in the background, its output into `background.stdout|.stderr`
/// in `dir`.
fn spawn(args: &[&str], dir: &Path) -> Child {
    spawn_into(peerstage().args(args), dir, "background")
}

/// On drop, SIGKILLs the process whose pid is in the file (a hook that outlived its run).
struct KillPidInFile(PathBuf);

impl Drop for KillPidInFile {
    fn drop(&mut self) {
        let pid = fs::read_to_string(&self.0).unwrap_or_default();
        if let Ok(pid) = pid.trim().parse::<i32>() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// `KEY=VALUE` lines of a hook's `env` dump, for the PEERSTAGE_ variables.
#[track_caller]
fn env_file(path: &Path) -> BTreeMap<String, String> {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("hook output {}: {err}", path.display()));
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

#[track_caller]
fn assert_var(env: &BTreeMap<String, String>, key: &str, value: &str, what: &str) {
    assert_eq!(
        env.get(key).map(String::as_str),
        Some(value),
        "{what}: {key} in {env:#?}"
    );
}

/// A hook that dumps the PEERSTAGE_ variables into `<dir>/<event>[-<peer>].env` and prints
/// noise to stdout (which must not reach peerstage's stdout).
fn env_hook(dir: &Path, event: &str, per_peer: bool) -> String {
    let file = if per_peer {
        format!("{}/{event}-$PEERSTAGE_PEER.env", p(dir))
    } else {
        format!("{}/{event}.env", p(dir))
    };
    format!("sh -c 'echo hook noise on stdout; env | grep ^PEERSTAGE_ | sort > \"{file}\"'")
}

// ---------------------------------------------------------------------------------------------
// 1 + 2: a pool from cback3.conf, from the equivalent TOML and from `config show`

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One pool of two local and three remote peers, all ready, written as a cback3.conf and as
/// the equivalent native TOML.
struct CedarPool {
    fx: Fx,
    /// The local peers, then the remote ones.
    all: Vec<String>,
    collects: BTreeMap<String, PathBuf>,
    xml: PathBuf,
    toml: PathBuf,
}

impl CedarPool {
    fn new() -> CedarPool {
        let fx = Fx::with_sshd();
        let sshd = fx.sshd();
        let locals = [fx.unique("local-a"), fx.unique("local-b")];
        let remotes = [
            fx.unique("remote-a"),
            fx.unique("remote-b"),
            fx.unique("remote-c"),
        ];
        let all: Vec<String> = locals.iter().chain(remotes.iter()).cloned().collect();
        // The backup user and group: whoever runs the tests, so that ssh logs in as them.
        let id = |flag: &str| {
            let out = run(std::process::Command::new("id").arg(flag));
            out.expect_code(0, "id");
            out.stdout.trim().to_string()
        };
        let (user, group) = (id("-un"), id("-gn"));
        let mut collects = BTreeMap::new();
        for name in &all {
            collects.insert(name.to_string(), fx.ready(name));
        }

        let mut xml_peers = String::new();
        // Interleaved: Cedar stages the local peers first whatever the order in the file, so
        // this reads the same as the TOML below, which lists them first.
        for (name, kind) in [
            (&remotes[0], "remote"),
            (&locals[0], "local"),
            (&remotes[1], "remote"),
            (&locals[1], "local"),
            (&remotes[2], "remote"),
        ] {
            xml_peers += &format!(
                "      <peer>\n         <name>{name}</name>\n         <type>{kind}</type>\n         \
                 <collect_dir>{}</collect_dir>\n         <ignore_failures>none</ignore_failures>\n      \
                 </peer>\n",
                xml_escape(&p(&collects[name.as_str()]))
            );
        }
        let xml = format!(
            "<?xml version=\"1.0\"?>\n<cb_config>\n   <options>\n      \
             <starting_day>monday</starting_day>\n      <working_dir>{work}</working_dir>\n      \
             <backup_user>{user}</backup_user>\n      <backup_group>{group}</backup_group>\n      \
             <rcp_command>{rcp}</rcp_command>\n      <rsh_command>{rsh}</rsh_command>\n      \
             <pre_action_hook>\n         <action>collect</action>\n         \
             <command>/bin/false</command>\n      </pre_action_hook>\n      \
             <pre_action_hook>\n         <action>stage</action>\n         \
             <command>/bin/true</command>\n      </pre_action_hook>\n      \
             <post_action_hook>\n         <action>stage</action>\n         \
             <command>/bin/true</command>\n      </post_action_hook>\n   </options>\n   \
             <stage>\n      <staging_dir>{staging}</staging_dir>\n{xml_peers}   </stage>\n\
             </cb_config>\n",
            work = xml_escape(&p(&fx.work())),
            rcp = xml_escape(&sshd.rcp_command()),
            rsh = xml_escape(&sshd.rsh_command()),
            staging = xml_escape(&p(&fx.staging())),
            user = xml_escape(&user),
            group = xml_escape(&group),
        );
        let xml = fx.write_config("cback3.conf", &xml);

        // The same pool in the native format; like cback3.conf it names no lock dir. Cedar's
        // backup_user is the remote user of remote peers, and when running as root also the
        // local user their copies run as.
        let local_user = if is_root() {
            format!("local_user = {}\n", q(&user))
        } else {
            String::new()
        };
        let mut toml = format!(
            "staging_dir = {}\nworking_dir = {}\nbackup_user = {user_q}\nbackup_group = {group_q}\n\
             starting_day = \"monday\"\n\n[defaults]\nrcp_command = {}\nrsh_command = {}\n\
             remote_user = {user_q}\n{local_user}\n\
             [hooks]\nrun_start = [\"/bin/true\"]\nrun_end = [\"/bin/true\"]\n",
            q(&p(&fx.staging())),
            q(&p(&fx.work())),
            q(&sshd.rcp_command()),
            q(&sshd.rsh_command()),
            user_q = q(&user),
            group_q = q(&group),
        );
        for name in &locals {
            toml += &local_peer_toml(
                name,
                &collects[name.as_str()],
                "ignore_failures = \"none\"\n",
            );
        }
        for name in &remotes {
            toml += &remote_peer_toml(
                name,
                &collects[name.as_str()],
                "ignore_failures = \"none\"\n",
            );
        }
        let toml = fx.write_config("pool.toml", &toml);
        CedarPool {
            fx,
            all,
            collects,
            xml,
            toml,
        }
    }

    /// What `config show` prints for `config`.
    #[track_caller]
    fn show(&self, config: &Path) -> String {
        let out = ps(&["config", "show", "--config", &p(config)]);
        out.expect_code(0, &format!("config show {}", config.display()));
        out.stdout
    }

    /// The `config show` output of the cback3.conf, as a config file of its own.
    fn shown(&self) -> PathBuf {
        self.fx.write_config("shown.toml", &self.show(&self.xml))
    }

    /// Runs the pool from `config` and checks all it did, then moves the staged day aside (to
    /// the path returned) and removes the stage indicators, so that a next run starts over.
    #[track_caller]
    fn run_and_check(&self, what: &str, config: &Path) -> PathBuf {
        let (fx, sshd, all, collects) = (&self.fx, self.fx.sshd(), &self.all, &self.collects);
        let expected: BTreeMap<String, BTreeMap<String, Vec<u8>>> = collects
            .iter()
            .map(|(name, dir)| (name.clone(), files_by_name(dir)))
            .collect();
        let lock_dir = p(&fx.lock_dir());
        let logins = sshd.logins();
        // cback3.conf cannot name a lock dir: keep the locks in the temp dir all the same.
        let out = run_pool(config, &["--json", "--lock-dir", &lock_dir]);
        out.expect_code(0, &format!("run from the {what}"));
        let report = json_of(&out);
        assert_eq!(report["status"], "T", "{what}: run status\n{report:#}");
        assert_eq!(report["exit_code"], 0, "{what}\n{report:#}");
        assert_eq!(report["daily_dir"], p(&fx.daily()).as_str(), "{what}");
        let mut total_files = 0;
        let mut total_bytes = 0;
        for name in all {
            let entry = peer_report(&report, name);
            let files = &expected[name.as_str()];
            let bytes: usize = files.values().map(Vec::len).sum();
            assert_eq!(entry["status"], "T", "{what}: peer {name}\n{report:#}");
            assert_eq!(entry["files"], files.len(), "{what}: files of {name}");
            assert_eq!(entry["bytes"], bytes, "{what}: bytes of {name}");
            total_files += files.len();
            total_bytes += bytes;
            assert_same_files(&fx.target(name), files, what);
            let stage = collects[name.as_str()].join("cback.stage");
            assert!(
                stage.is_file(),
                "{what}: no stage indicator {}",
                stage.display()
            );
            assert!(
                fs::metadata(fx.target(name))
                    .map(|m| m.is_dir())
                    .unwrap_or(false),
                "{what}: {} is not a dir",
                fx.target(name).display()
            );
        }
        assert_eq!(report["files"], total_files, "{what}: total files");
        assert_eq!(report["bytes"], total_bytes, "{what}: total bytes");
        let master = fx.daily().join("cback.stage");
        assert!(
            master.is_file(),
            "{what}: no master stage indicator {}",
            master.display()
        );
        assert_eq!(
            fs::read(&master).unwrap().len(),
            0,
            "master indicator is empty"
        );
        assert_eq!(
            report_file(&fx.daily()),
            report,
            "{what}: the report file differs from the --json output"
        );
        // The daily dir holds the peers, the master indicator and the report; nothing else.
        let mut want: Vec<String> = all.clone();
        want.push("cback.stage".into());
        want.extend(report_names(&fx.daily()));
        want.sort();
        assert_eq!(list_dir(&fx.daily()), want, "{what}: daily dir");
        assert!(
            sshd.logins() > logins,
            "{what}: the remote peers were not staged over ssh"
        );
        // The run made its locks there (the dir did not exist before), and removed them
        // when it let them go.
        assert!(
            fx.lock_dir().is_dir(),
            "{what}: no lock dir {lock_dir}: the locks were taken elsewhere"
        );
        assert_eq!(
            list_dir(&fx.lock_dir()),
            Vec::<String>::new(),
            "{what}: lock files left in {lock_dir}"
        );

        let keep = fx.base().join(format!("result-{}", what.replace(' ', "-")));
        fs::rename(fx.staging().join("2026"), &keep).expect("move the staged day aside");
        for dir in collects.values() {
            fs::remove_file(dir.join("cback.stage")).expect("remove stage indicator");
        }
        keep
    }
}

/// A config's lines but for comments (`config show` names its source in one).
fn settings(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn config_check_accepts_a_cback3_conf_and_the_equivalent_toml() {
    let pool = CedarPool::new();
    for config in [&pool.xml, &pool.toml] {
        ps(&["config", "check", "--config", &p(config)])
            .expect_code(0, &format!("config check {}", config.display()));
    }
}

#[test]
fn config_show_reads_the_same_pool_from_cback3_conf_and_from_the_toml() {
    let pool = CedarPool::new();
    assert_eq!(
        settings(&pool.show(&pool.xml)),
        settings(&pool.show(&pool.toml)),
        "config show of cback3.conf and of the equivalent TOML differ"
    );
}

#[test]
fn a_pool_from_cback3_conf_stages_every_peer() {
    let pool = CedarPool::new();
    pool.run_and_check("cback3.conf", &pool.xml);
}

#[test]
fn a_pool_from_the_equivalent_toml_stages_every_peer() {
    let pool = CedarPool::new();
    pool.run_and_check("native TOML", &pool.toml);
}

#[test]
fn a_pool_from_config_show_output_stages_every_peer() {
    let pool = CedarPool::new();
    let shown = pool.shown();
    pool.run_and_check("config show output", &shown);
}

#[test]
fn cback3_conf_toml_and_config_show_output_stage_the_same_files() {
    let pool = CedarPool::new();
    let shown = pool.shown();
    let results = [
        pool.run_and_check("cback3.conf", &pool.xml),
        pool.run_and_check("native TOML", &pool.toml),
        pool.run_and_check("config show output", &shown),
    ];
    for name in &pool.all {
        let first = files_by_name(&results[0].join("11/21").join(name));
        for other in &results[1..] {
            assert!(
                files_by_name(&other.join("11/21").join(name)) == first,
                "peer {name}: staged files differ between {} and {}",
                results[0].display(),
                other.display()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2: config check

/// One ready local peer, and config files around it whose mistakes sit on known lines.
struct ConfigCase {
    fx: Fx,
    collect: PathBuf,
}

impl ConfigCase {
    fn new() -> ConfigCase {
        let fx = Fx::local();
        let collect = fx.ready("a");
        ConfigCase { fx, collect }
    }

    /// Five lines of TOML; the line after them is line 6.
    fn toml_head(&self) -> String {
        format!(
            "staging_dir = {}\nlock_dir = {}\n\n[[peer]]\nname = \"a\"\n",
            q(&p(&self.fx.staging())),
            q(&p(&self.fx.lock_dir()))
        )
    }

    /// A cback3.conf whose `peer_extra` is line 9.
    fn xml(&self, peer_extra: &str) -> String {
        format!(
            "<?xml version=\"1.0\"?>\n\
             <cb_config>\n\
             <stage>\n\
             <staging_dir>{}</staging_dir>\n\
             <peer>\n\
             <name>a</name>\n\
             <type>local</type>\n\
             <collect_dir>{}</collect_dir>\n\
             {peer_extra}\n\
             </peer>\n\
             </stage>\n\
             </cb_config>\n",
            xml_escape(&p(&self.fx.staging())),
            xml_escape(&p(&self.collect))
        )
    }

    /// Checking changed nothing.
    #[track_caller]
    fn assert_untouched(&self) {
        assert!(
            !self.fx.lock_dir().exists(),
            "config check created the lock dir"
        );
        assert!(
            list_dir(&self.fx.staging()).is_empty(),
            "config check wrote into the staging dir"
        );
    }
}

/// Asserts `config check` fails with 2 and one stderr line naming the file, the line and `field`.
#[track_caller]
fn assert_config_error(config: &Path, line: usize, field: &str, what: &str) {
    let out = ps(&["config", "check", "--config", &p(config)]);
    out.expect_code(2, what).expect_one_error_line(what);
    out.expect_stderr_line_with(&[&p(config), &format!("line {line}"), field], what);
}

#[test]
fn config_check_accepts_good_configs() {
    let case = ConfigCase::new();
    let fx = &case.fx;
    let toml = fx.toml(
        "",
        "",
        &[local_peer_toml(
            "a",
            &case.collect,
            "ignore_failures = \"weekly\"\n",
        )],
    );
    let good = fx.write_config("good.toml", &toml);
    ps(&["config", "check", "--config", &p(&good)]).expect_code(0, "config check of good TOML");
    let good_xml = fx.write_config(
        "good.conf",
        &case.xml("<ignore_failures>daily</ignore_failures>"),
    );
    ps(&["config", "check", "--config", &p(&good_xml)])
        .expect_code(0, "config check of a good cback3.conf");
    case.assert_untouched();
}

#[test]
fn config_check_names_file_line_and_field_of_bad_toml_values() {
    let case = ConfigCase::new();
    let fx = &case.fx;
    let collect = q(&p(&case.collect));
    let head = case.toml_head();
    let unknown = fx.write_config(
        "unknown.toml",
        &format!("{head}tpye = \"local\"\ncollect_dir = {collect}\n"),
    );
    assert_config_error(&unknown, 6, "tpye", "TOML unknown key");
    let relative = fx.write_config(
        "relative.toml",
        &format!("{head}collect_dir = \"backup/collect\"\ntype = \"local\"\n"),
    );
    assert_config_error(&relative, 6, "collect_dir", "TOML relative collect_dir");
    case.assert_untouched();
}

#[test]
fn config_check_names_file_line_and_field_of_a_toml_syntax_error() {
    let case = ConfigCase::new();
    let fx = &case.fx;
    let collect = q(&p(&case.collect));
    let head = case.toml_head();
    let syntax = fx.write_config(
        "syntax.toml",
        &format!("{head}type = \"local\" \"extra\"\ncollect_dir = {collect}\n"),
    );
    assert_config_error(&syntax, 6, "type", "TOML syntax error");
    case.assert_untouched();
}

#[test]
fn config_check_names_file_line_and_field_of_bad_xml() {
    let case = ConfigCase::new();
    let fx = &case.fx;
    let broken = fx.write_config(
        "broken.conf",
        &case.xml("<ignore_failures>none</ignore_fail>"),
    );
    assert_config_error(&broken, 9, "ignore_fail", "XML not well-formed");
    let bad_mode = fx.write_config(
        "bad-mode.conf",
        &case.xml("<ignore_failures>sometimes</ignore_failures>"),
    );
    assert_config_error(&bad_mode, 9, "ignore_failures", "XML bad ignore_failures");
    case.assert_untouched();
}

// ---------------------------------------------------------------------------------------------
// 3: ignore-failure modes

#[test]
fn ignore_failure_modes_decide_whether_a_not_ready_peer_fails_the_run() {
    // (mode, starting_day, --full, exit code). 2026-11-21 is a Saturday: with
    // starting_day = saturday, a run without --full is the weekly one.
    let cases = [
        ("none", "monday", false, 1),
        ("none", "monday", true, 1),
        ("all", "monday", false, 0),
        ("all", "monday", true, 0),
        ("daily", "monday", false, 0),
        ("daily", "monday", true, 1),
        ("weekly", "monday", false, 1),
        ("weekly", "monday", true, 0),
        ("daily", "saturday", false, 1),
        ("weekly", "saturday", false, 0),
        ("daily", "sunday", false, 0),
        ("weekly", "sunday", false, 1),
    ];
    let mut failures = Vec::new();
    for (mode, day, full, code) in cases {
        let what = format!("ignore_failures = {mode}, starting_day = {day}, full = {full}");
        let fx = Fx::local();
        let good = fx.ready("good");
        let lazy = fx.collect("lazy");
        write_file(&lazy.join("half-written.tar"), "not ready yet");
        let config = fx.write_config(
            "pool.toml",
            &fx.toml(
                &format!("starting_day = {}\n", q(day)),
                "",
                &[
                    local_peer_toml("good", &good, ""),
                    local_peer_toml("lazy", &lazy, &format!("ignore_failures = {}\n", q(mode))),
                ],
            ),
        );
        let mut args = vec!["--json"];
        if full {
            args.push("--full");
        }
        let out = run_pool(&config, &args);
        out.expect_no_panic(&what);
        if out.code != code {
            failures.push(format!("{what}: expected exit {code}\n{}", out.describe()));
            continue;
        }
        let report = json_of(&out);
        assert_status(&report, "good", "T");
        assert_status(&report, "lazy", "N");
        assert_eq!(
            peer_report(&report, "lazy")["ignored"],
            code == 0,
            "{what}: ignored flag\n{report:#}"
        );
        assert_eq!(
            report["status"],
            if code == 0 { "T" } else { "E" },
            "{what}"
        );
        assert_eq!(report["full"], full, "{what}");
        assert!(
            files_by_name(&fx.target("lazy")).is_empty(),
            "{what}: files staged for a peer that was not ready"
        );
        assert!(
            !lazy.join("cback.stage").exists(),
            "{what}: a not-ready peer was marked staged"
        );
        assert!(
            good.join("cback.stage").is_file(),
            "{what}: good peer not marked"
        );
        assert!(
            fx.daily().join("cback.stage").is_file(),
            "{what}: no master indicator"
        );
        if code == 1 {
            out.expect_stderr_line_with(&["lazy", "cback.collect"], &what);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------------------------------------
// 4: managed actions

#[test]
fn managed_actions_run_on_the_peer_before_staging() {
    let fx = Fx::with_sshd();
    let base = fx.base();
    let collect = fx.collect("managed");
    let log = base.join("cback.log");
    // The fake cback3 collects: the peer is only ready once it has run.
    let script = write_script(
        &base.join("fake-cback3"),
        &format!(
            "echo \"$*\" >> {log}\nprintf 'made by %s\\n' \"$*\" > {collect}/managed.tar\n: > {collect}/cback.collect",
            log = sh_quote(&p(&log)),
            collect = sh_quote(&p(&collect)),
        ),
    );
    // An unmanaged peer with actions and a cback command: they must not run.
    let other_log = base.join("other.log");
    let other_script = write_script(
        &base.join("other-cback3"),
        &format!("echo \"$*\" >> {}", sh_quote(&p(&other_log))),
    );
    let other = fx.ready("other");
    let config = fx.write_config(
        "pool.toml",
        &fx.toml(
            "",
            "",
            &[
                remote_peer_toml(
                    "managed-peer",
                    &collect,
                    &format!(
                        "managed = true\nmanaged_actions = [\"collect\"]\ncback_command = {}\n",
                        q(&p(&script))
                    ),
                ),
                remote_peer_toml(
                    "unmanaged-peer",
                    &other,
                    &format!(
                        "managed = false\nmanaged_actions = [\"collect\"]\ncback_command = {}\n",
                        q(&p(&other_script))
                    ),
                ),
            ],
        ),
    );

    let out = run_pool(&config, &["--json"]);
    out.expect_code(0, "run with a managed peer");
    assert_eq!(fs::read_to_string(&log).unwrap_or_default(), "collect\n");
    let report = json_of(&out);
    assert_status(&report, "managed-peer", "T");
    assert_status(&report, "unmanaged-peer", "T");
    assert_eq!(
        fs::read(fx.target("managed-peer").join("managed.tar")).unwrap_or_default(),
        b"made by collect\n"
    );
    assert!(collect.join("cback.stage").is_file());
    assert!(
        !other_log.exists(),
        "managed actions ran on an unmanaged peer"
    );

    // Again, from scratch, as the weekly full run.
    for name in ["managed.tar", "cback.collect", "cback.stage"] {
        fs::remove_file(collect.join(name)).expect("reset collect dir");
    }
    let config_s = p(&config);
    let out = ps(&[
        "run",
        "--config",
        &config_s,
        "--date",
        "2026-11-22",
        "--full",
        "--json",
    ]);
    out.expect_code(0, "full run with a managed peer");
    assert_eq!(
        fs::read_to_string(&log).unwrap_or_default(),
        "collect\n--full collect\n"
    );
    assert_eq!(
        fs::read(
            fx.staging()
                .join("2026/11/22/managed-peer")
                .join("managed.tar")
        )
        .unwrap_or_default(),
        b"made by --full collect\n"
    );
}

#[test]
fn a_failing_managed_action_fails_only_that_peer() {
    let fx = Fx::with_sshd();
    let collect = fx.ready("failing");
    let good = fx.ready("good");
    let script = write_script(&fx.base().join("broken-cback3"), "exit 3");
    let config = fx.write_config(
        "pool.toml",
        &fx.toml(
            "",
            "",
            &[
                remote_peer_toml(
                    "failing",
                    &collect,
                    &format!(
                        "managed = true\nmanaged_actions = [\"collect\"]\ncback_command = {}\n",
                        q(&p(&script))
                    ),
                ),
                local_peer_toml("good", &good, ""),
            ],
        ),
    );
    let out = run_pool(&config, &["--json"]);
    out.expect_code(1, "run with a failing managed action");
    let report = json_of(&out);
    assert_status(&report, "failing", "E");
    assert_status(&report, "good", "T");
    assert!(files_by_name(&fx.target("failing")).is_empty());
    assert!(!collect.join("cback.stage").exists());
    out.expect_stderr_line_with(&["failing", "collect"], "error names peer and action");
}

// ---------------------------------------------------------------------------------------------
// 5: locks

/// A pool of one local peer `name` and its first run, returned once it holds the run and
/// peer locks, which it keeps while its pre_peer hook sleeps `seconds` (the hook of any
/// later run passes at once). Also returns the config.
fn first_run_holding_the_locks(fx: &Fx, name: &str, seconds: u32) -> (PathBuf, Child) {
    let collect = fx.ready(name);
    let started = fx.base().join("started");
    let config = fx.write_config(
        "pool.toml",
        &fx.toml(
            "",
            &hook(
                "pre_peer",
                &[format!(
                    "sh -c 'test -e {0} && exit 0; echo $$ > {0}; sleep {seconds}'",
                    p(&started)
                )],
            ),
            &[local_peer_toml(name, &collect, "")],
        ),
    );
    let first = spawn(
        &["run", "--config", &p(&config), "--date", DATE, "--quiet"],
        fx.base(),
    );
    wait_for_lines(&started, 1, "first run's pre_peer hook");
    (config, first)
}

#[test]
fn a_second_run_fails_fast_on_the_run_lock_or_waits_for_it() {
    let fx = Fx::local();
    let (config, mut first) = first_run_holding_the_locks(&fx, "slow", 3);
    let config_s = p(&config);
    let holder = first.id();

    // `locks` lists the run lock and the peer lock as held by the first run.
    let out = ps(&["locks", "--config", &config_s, "--json"]);
    out.expect_code(0, "locks --json");
    let locks = json_of(&out);
    let rows = locks.as_array().expect("locks --json is an array");
    let find = |prefix: &str| {
        rows.iter()
            .find(|row| row["lock"].as_str().unwrap_or("").starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} lock in {locks:#}"))
    };
    for prefix in ["run", "peer slow"] {
        let row = find(prefix);
        assert_eq!(row["held"], true, "{prefix} lock held\n{locks:#}");
        assert_eq!(row["owner_pid"], holder, "{prefix} lock owner\n{locks:#}");
        assert_eq!(row["owner_alive"], true, "{prefix}\n{locks:#}");
        let file = PathBuf::from(row["file"].as_str().unwrap_or(""));
        assert!(
            file.starts_with(fx.lock_dir()),
            "lock file {} outside the config's lock dir",
            file.display()
        );
    }
    let out = ps(&["locks", "--config", &config_s]);
    out.expect_code(0, "locks");
    assert!(
        out.stdout.contains(&format!("pid {holder}")) && out.stdout.contains("peer slow"),
        "locks does not list the held locks\n{}",
        out.describe()
    );

    let clock = Instant::now();
    let out = run_pool(&config, &[]);
    let took = clock.elapsed();
    out.expect_code(75, "second run while the first holds the run lock")
        .expect_one_error_line("second run")
        .expect_stderr_contains(&format!("pid {holder}"), "the error names the owner pid");
    assert!(
        took < Duration::from_millis(2500),
        "the second run did not fail at once ({took:?})"
    );

    let clock = Instant::now();
    let out = ps(&[
        "run",
        "--config",
        &config_s,
        "--date",
        "2026-11-22",
        "--wait",
        "--json",
    ]);
    let took = clock.elapsed();
    out.expect_code(0, "run --wait");
    assert_status(&json_of(&out), "slow", "T");
    let status = first.wait().expect("wait for the first run");
    assert_eq!(status.code(), Some(0), "first run");
    assert!(
        took > Duration::from_millis(500),
        "run --wait did not wait for the first run ({took:?})"
    );
    assert!(
        files_by_name(&fx.target("slow")).contains_key("id-slow.txt"),
        "the first run staged"
    );
    assert!(fx.staging().join("2026/11/22/slow/id-slow.txt").is_file());

    let out = ps(&["locks", "--config", &config_s, "--json"]);
    out.expect_code(0, "locks --json after the runs");
    let locks = json_of(&out);
    for row in locks.as_array().expect("array") {
        assert_eq!(
            row["held"], false,
            "lock still held after the runs\n{locks:#}"
        );
    }
}

#[test]
fn a_killed_run_does_not_block_the_next() {
    let fx = Fx::local();
    let collect = fx.ready("victim");
    let hook_pid = fx.base().join("hook.pid");
    // Ends the orphaned hook (by the pid it wrote) however the test ends.
    let _orphan = KillPidInFile(hook_pid.clone());
    // The first run's hook records its pid and sleeps; later runs' hooks pass at once.
    let config = fx.write_config(
        "pool.toml",
        &fx.toml(
            "",
            &hook(
                "pre_peer",
                &[format!(
                    "sh -c 'test -e {0} && exit 0; echo $$ > {0}; exec sleep 20'",
                    p(&hook_pid)
                )],
            ),
            &[local_peer_toml("victim", &collect, "")],
        ),
    );
    let config_s = p(&config);
    let mut first = spawn(&["run", "--config", &config_s, "--date", DATE], fx.base());
    wait_for_lines(&hook_pid, 1, "first run's pre_peer hook");
    first.kill().expect("SIGKILL the run");
    let status = first.wait().expect("reap the killed run");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );

    // The orphaned hook (still sleeping) must not hold the locks either.
    let clock = Instant::now();
    let out = run_pool(&config, &["--json"]);
    out.expect_code(0, "run after a killed run");
    assert!(clock.elapsed() < Duration::from_secs(10));
    assert_status(&json_of(&out), "victim", "T");
    assert!(collect.join("cback.stage").is_file());

    // The killed run's lock files went with the next run: nothing is left to list.
    let out = ps(&["locks", "--config", &config_s, "--json"]);
    out.expect_code(0, "locks --json");
    let locks = json_of(&out);
    assert_eq!(locks, serde_json::json!([]), "locks left after the runs");
    assert_eq!(list_dir(&fx.lock_dir()), Vec::<String>::new());
}

/// SIGTERM (cron's timeout, systemd's stop, Ctrl-C's SIGINT alike) cancels a run instead of
/// killing it: the copy under way is ended and leaves nothing under a final name, the peer not
/// started is not started, and the report is still written, with status A and exit code 1.
#[test]
fn sigterm_cancels_a_run_that_still_reports() {
    let fx = Fx::with_sshd();
    let sshd = fx.sshd();
    let (slow, next) = (fx.unique("slow"), fx.unique("next"));
    let slow_collect = fx.ready(&slow);
    let next_collect = fx.ready(&next);
    let copied = fx.base().join("copied");
    let woke = fx.base().join("woke");
    // Not named scp: nothing is shared, so this script is what copies. The first time, it
    // lets the files arrive, says so, then holds the copy open.
    let rcp = write_script(
        &fx.base().join("slow-rcp"),
        &format!(
            r#"case "$*" in *cback.collect*|*cback.stage*) exec /usr/bin/scp "$@" ;; esac
test -e {copied} && exec /usr/bin/scp "$@"
/usr/bin/scp "$@" || exit $?
echo copied > {copied}
sleep 30
echo woke > {woke}"#,
            copied = sh_quote(&p(&copied)),
            woke = sh_quote(&p(&woke))
        ),
    );
    let rcp = sshd.rcp_command().replacen("/usr/bin/scp", &p(&rcp), 1);
    let extra = format!("rcp_command = {}\n", q(&rcp));
    let config = fx.write_config(
        "pool.toml",
        &fx.toml(
            "jobs = 1",
            "",
            &[
                remote_peer_toml(&slow, &slow_collect, &extra),
                remote_peer_toml(&next, &next_collect, ""),
            ],
        ),
    );
    let mut run = spawn(
        &["run", "--config", &p(&config), "--date", DATE, "--json"],
        fx.base(),
    );
    wait_for_lines(&copied, 1, "the slow peer's copy");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(run.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM the run");
    let status = run.wait().expect("reap the run");
    let stderr = fs::read_to_string(fx.base().join("background.stderr")).unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(1),
        "exit status of a canceled run\n{stderr}"
    );
    assert!(!woke.exists(), "the copy was left running\n{stderr}");
    assert!(stderr.contains("canceled by SIGTERM"), "{stderr}");

    let report = report_file(&fx.daily());
    assert_eq!(report["status"], "A", "{report:#}");
    assert_status(&report, &slow, "A");
    assert_status(&report, &next, "A");
    // Nothing half-staged: no file of the slow peer under a final name, no private dir left.
    assert!(
        entries(&fx.target(&slow)).is_empty(),
        "left in the slow peer's target: {:?}",
        entries(&fx.target(&slow))
    );
    assert!(!fx.target(&next).exists(), "the next peer was started");
    assert!(!slow_collect.join("cback.stage").exists());
    assert!(!next_collect.join("cback.stage").exists());
    assert!(
        !fx.daily().join("cback.stage").exists(),
        "master indicator of a canceled run"
    );

    // The next run is not held up and finishes the job.
    let out = run_pool(&config, &["--json"]);
    out.expect_code(0, "run after a canceled run");
    assert!(slow_collect.join("cback.stage").is_file());
}

/// A run waiting for the run lock with --wait ends on SIGTERM too, saying so.
#[test]
fn sigterm_ends_a_run_waiting_for_the_lock() {
    let fx = Fx::local();
    let (config, mut first) = first_run_holding_the_locks(&fx, "held", 2);
    let config_s = p(&config);
    let waiter_dir = mkdir(&fx.base().join("waiter"));
    let mut waiter = spawn(
        &["run", "--config", &config_s, "--date", DATE, "--wait"],
        &waiter_dir,
    );
    thread::sleep(Duration::from_millis(300));
    assert!(waiter.try_wait().expect("poll").is_none(), "not waiting");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(waiter.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM the waiting run");
    let status = waiter.wait().expect("reap the waiting run");
    let stderr = fs::read_to_string(waiter_dir.join("background.stderr")).unwrap_or_default();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("canceled by SIGTERM while waiting"),
        "{stderr}"
    );
    assert!(
        first.try_wait().expect("poll").is_none(),
        "the first run was disturbed"
    );
    first.wait().expect("the first run ends");
}

// ---------------------------------------------------------------------------------------------
// 6 + 7: hooks and --json

/// Two ready local peers, `first` and `second`, and a hook on every event that dumps its
/// PEERSTAGE_ variables into a file of `out_dir` (see `env_hook`).
struct HookedPool {
    fx: Fx,
    out_dir: PathBuf,
    config: PathBuf,
    /// Each peer's files, as staged.
    expected: BTreeMap<&'static str, BTreeMap<String, Vec<u8>>>,
}

impl HookedPool {
    fn new() -> HookedPool {
        let fx = Fx::local();
        let out_dir = mkdir(&fx.base().join("hook-out"));
        let first = fx.ready("first");
        let second = fx.collect("second");
        write_file(&second.join("only.tar"), "x".repeat(1000));
        write_file(&second.join("cback.collect"), "");
        let hooks = [
            hook("run_start", &[env_hook(&out_dir, "run_start", false)]),
            hook("pre_peer", &[env_hook(&out_dir, "pre_peer", true)]),
            hook("post_peer", &[env_hook(&out_dir, "post_peer", true)]),
            hook("run_end", &[env_hook(&out_dir, "run_end", false)]),
        ]
        .concat();
        let config = fx.write_config(
            "pool.toml",
            &fx.toml(
                "",
                &hooks,
                &[
                    local_peer_toml("first", &first, ""),
                    local_peer_toml("second", &second, ""),
                ],
            ),
        );
        let expected = [
            ("first", files_by_name(&first)),
            ("second", files_by_name(&second)),
        ]
        .into_iter()
        .collect();
        HookedPool {
            fx,
            out_dir,
            config,
            expected,
        }
    }

    /// `run --json`, which must succeed.
    #[track_caller]
    fn run_json(&self) -> Out {
        let out = run_pool(&self.config, &["--json"]);
        out.expect_code(0, "run with hooks");
        out
    }

    /// The variables the hook of `event` (of `peer`, for a peer's hooks) saw.
    #[track_caller]
    fn env(&self, event: &str, peer: Option<&str>) -> BTreeMap<String, String> {
        let file = match peer {
            Some(peer) => format!("{event}-{peer}.env"),
            None => format!("{event}.env"),
        };
        env_file(&self.out_dir.join(file))
    }
}

#[test]
fn hook_output_stays_out_of_the_json_report() {
    let pool = HookedPool::new();
    let out = pool.run_json();
    assert!(
        !out.stdout.contains("hook noise"),
        "hook output reached stdout\n{}",
        out.describe()
    );
    json_of(&out);
}

#[test]
fn run_start_and_run_end_hooks_see_the_job() {
    let pool = HookedPool::new();
    let report = json_of(&pool.run_json());
    let daily = p(&pool.fx.daily());

    let start = pool.env("run_start", None);
    assert_var(&start, "PEERSTAGE_EVENT", "run-start", "run_start");
    assert_var(&start, "PEERSTAGE_DAILY_DIR", &daily, "run_start");
    assert!(
        !start.contains_key("PEERSTAGE_PEER"),
        "run_start: {start:#?}"
    );

    let total_files: usize = pool.expected.values().map(BTreeMap::len).sum();
    let total_bytes: usize = pool
        .expected
        .values()
        .flat_map(BTreeMap::values)
        .map(Vec::len)
        .sum();
    let end = pool.env("run_end", None);
    assert_var(&end, "PEERSTAGE_EVENT", "run-end", "run_end");
    assert_var(&end, "PEERSTAGE_STATUS", "T", "run_end");
    assert_var(&end, "PEERSTAGE_FILES", &total_files.to_string(), "run_end");
    assert_var(&end, "PEERSTAGE_BYTES", &total_bytes.to_string(), "run_end");
    assert_var(&end, "PEERSTAGE_DAILY_DIR", &daily, "run_end");
    assert_eq!(report["files"], total_files);
    assert_eq!(report["bytes"], total_bytes);
    assert!(report["seconds"].as_f64().is_some_and(|s| s >= 0.0));
}

#[test]
fn pre_and_post_peer_hooks_see_their_peer() {
    let pool = HookedPool::new();
    let report = json_of(&pool.run_json());
    let daily = p(&pool.fx.daily());
    for (name, files) in &pool.expected {
        let count = files.len();
        let bytes: usize = files.values().map(Vec::len).sum();
        let target = p(&pool.fx.target(name));

        let pre = pool.env("pre_peer", Some(name));
        let what = format!("pre_peer of {name}");
        assert_var(&pre, "PEERSTAGE_EVENT", "pre-peer", &what);
        assert_var(&pre, "PEERSTAGE_PEER", name, &what);
        assert_var(&pre, "PEERSTAGE_TARGET_DIR", &target, &what);
        assert_var(&pre, "PEERSTAGE_DAILY_DIR", &daily, &what);

        let post = pool.env("post_peer", Some(name));
        let what = format!("post_peer of {name}");
        assert_var(&post, "PEERSTAGE_EVENT", "post-peer", &what);
        assert_var(&post, "PEERSTAGE_PEER", name, &what);
        assert_var(&post, "PEERSTAGE_STATUS", "T", &what);
        assert_var(&post, "PEERSTAGE_FILES", &count.to_string(), &what);
        assert_var(&post, "PEERSTAGE_BYTES", &bytes.to_string(), &what);
        assert_var(&post, "PEERSTAGE_TARGET_DIR", &target, &what);
        assert_var(&post, "PEERSTAGE_DAILY_DIR", &daily, &what);

        let entry = peer_report(&report, name);
        assert_eq!(entry["status"], "T", "{name}\n{report:#}");
        assert_eq!(entry["files"], count, "{name}\n{report:#}");
        assert_eq!(entry["bytes"], bytes, "{name}\n{report:#}");
        assert!(
            entry["seconds"].as_f64().is_some_and(|s| s >= 0.0),
            "{name}: seconds\n{report:#}"
        );
        assert_same_files(&pool.fx.target(name), files, name);
    }
}

#[test]
fn without_json_the_report_is_a_table_line_per_peer() {
    let pool = HookedPool::new();
    let out = ps(&["run", "--config", &p(&pool.config), "--date", "2026-11-22"]);
    out.expect_code(0, "run with hooks, table");
    for name in ["first", "second"] {
        assert!(
            out.stdout
                .lines()
                .any(|line| line.starts_with(name) && line.contains(" T ")),
            "no table line for {name}\n{}",
            out.describe()
        );
    }
}

#[test]
fn a_failing_pre_peer_hook_skips_that_peer_only() {
    let fx = Fx::local();
    let good = fx.ready("good");
    let skipped = fx.ready("skipped");
    let config = fx.write_config(
        "pool.toml",
        &fx.toml(
            "",
            &hook(
                "pre_peer",
                &["sh -c 'test \"$PEERSTAGE_PEER\" != skipped'".to_string()],
            ),
            &[
                local_peer_toml("good", &good, ""),
                local_peer_toml("skipped", &skipped, ""),
            ],
        ),
    );
    let expected = files_by_name(&good);
    let out = run_pool(&config, &["--json"]);
    out.expect_code(1, "run with a failing pre_peer hook");
    let report = json_of(&out);
    assert_status(&report, "good", "T");
    assert_status(&report, "skipped", "S");
    assert_eq!(report["status"], "E");
    assert_same_files(&fx.target("good"), &expected, "good peer");
    assert!(
        files_by_name(&fx.target("skipped")).is_empty(),
        "a skipped peer was staged"
    );
    assert!(
        !skipped.join("cback.stage").exists(),
        "a skipped peer was marked"
    );
    assert!(good.join("cback.stage").is_file());
    out.expect_stderr_line_with(&["skipped", "pre-peer"], "error names peer and hook");
}

#[test]
fn a_failing_run_start_hook_cancels_the_run() {
    let fx = Fx::local();
    let one = fx.ready("one");
    let two = fx.ready("two");
    let config = fx.write_config(
        "pool.toml",
        &fx.toml(
            "",
            &hook("run_start", &["sh -c 'exit 4'".to_string()]),
            &[
                local_peer_toml("one", &one, ""),
                local_peer_toml("two", &two, ""),
            ],
        ),
    );
    let out = run_pool(&config, &["--json"]);
    out.expect_code(1, "run with a failing run_start hook");
    let report = json_of(&out);
    assert_eq!(report["status"], "A", "{report:#}");
    for (name, dir) in [("one", &one), ("two", &two)] {
        assert_status(&report, name, "A");
        assert!(files_by_name(&fx.target(name)).is_empty(), "{name} staged");
        assert!(!dir.join("cback.stage").exists(), "{name} marked");
    }
    out.expect_stderr_line_with(&["run-start", "4"], "error names the hook and its status");
}

// ---------------------------------------------------------------------------------------------
// 8: --dry-run

#[test]
fn dry_run_changes_nothing_and_prints_the_commands() {
    let fx = Fx::with_sshd();
    let sshd = fx.sshd();
    let remote = fx.ready("remote");
    let local = fx.ready("local");
    let config = fx.write_config(
        "pool.toml",
        &fx.toml(
            "",
            &hook(
                "run_start",
                &[format!("touch {}", p(&fx.base().join("hook-ran")))],
            ),
            &[
                remote_peer_toml("remote-peer", &remote, ""),
                local_peer_toml("local-peer", &local, ""),
            ],
        ),
    );
    // A lock dir from an earlier run, and one that does not exist yet: both stay as they are.
    let roots = [fx.base().to_path_buf()];
    for (what, config_path) in [
        ("no lock dir", config.clone()),
        ("existing lock dir", config),
    ] {
        if what == "existing lock dir" {
            mkdir(&fx.lock_dir());
            set_mode(&fx.lock_dir(), 0o700);
        }
        thread::sleep(Duration::from_millis(20));
        let before = snapshot(&roots);
        let logins = sshd.logins();
        let out = run_pool(&config_path, &["--dry-run"]);
        out.expect_no_panic(what);
        assert_unchanged(&before, &snapshot(&roots), what, &out);
        assert_eq!(
            sshd.logins(),
            logins,
            "{what}: a dry run logged in to the peer"
        );
        // The copy itself: over the SFTP session of the peer's ssh master
        // (`ssh ... -s remote-peer sftp`, then the step), and `cp` lines.
        let session_line = out.stdout.lines().any(|line| {
            line.starts_with("/usr/bin/ssh")
                && line.contains(&p(&sshd.ssh_config))
                && line.ends_with(" -s remote-peer sftp")
        });
        let copy_line = format!(
            "# over the SFTP session: list {} and copy every regular file in it",
            p(&remote)
        );
        assert!(
            session_line && out.stdout.contains(&copy_line),
            "{what}: no SFTP session copying {}\n{}",
            p(&remote),
            out.describe()
        );
        let cp_line = out.stdout.lines().any(|line| {
            line.starts_with("cp ")
                && line.contains(&p(&local.join("id-local.txt")))
                && line.contains(&p(&fx.target("local-peer")))
        });
        assert!(
            cp_line,
            "{what}: no cp line for the local peer's files\n{}",
            out.describe()
        );
        // A dry run of a pool that would stage fine reports success.
        out.expect_code(0, what);
    }
}

// ---------------------------------------------------------------------------------------------
// 9: one failing peer never stops the others

#[test]
fn an_unreachable_peer_does_not_stop_the_others() {
    let fx = Fx::with_sshd();
    let sshd = fx.sshd();
    let down = fx.ready("down");
    let up = fx.ready("up");
    let here = fx.ready("here");
    let config = fx.write_config(
        "pool.toml",
        &fx.toml(
            "jobs = 2\n",
            "",
            &[
                remote_peer_toml(
                    "down-peer",
                    &down,
                    &commands_toml(
                        &sshd.unreachable_rcp_command(),
                        &sshd.unreachable_rsh_command(),
                    ),
                ),
                remote_peer_toml("up-peer", &up, ""),
                local_peer_toml("here", &here, ""),
            ],
        ),
    );
    let expected_up = files_by_name(&up);
    let expected_here = files_by_name(&here);
    let out = run_pool(&config, &["--json"]);
    out.expect_code(1, "run with an unreachable peer");
    let report = json_of(&out);
    assert_status(&report, "down-peer", "f");
    assert_status(&report, "up-peer", "T");
    assert_status(&report, "here", "T");
    assert_eq!(report["status"], "E");
    assert_eq!(report["exit_code"], 1);
    assert_same_files(&fx.target("up-peer"), &expected_up, "reachable remote peer");
    assert_same_files(&fx.target("here"), &expected_here, "local peer");
    assert!(files_by_name(&fx.target("down-peer")).is_empty());
    assert!(!down.join("cback.stage").exists());
    assert!(up.join("cback.stage").is_file());
    assert!(fx.daily().join("cback.stage").is_file());
    assert_eq!(report_file(&fx.daily()), report);
    out.expect_stderr_line_with(&["down-peer"], "error names the unreachable peer");
}

// ---------------------------------------------------------------------------------------------
// 10: status

#[test]
fn status_shows_each_peer_and_changes_nothing() {
    let fx = Fx::with_sshd();
    let remote_ready = fx.ready("remote-ready");
    let remote_waiting = fx.collect("remote-waiting");
    write_file(&remote_waiting.join("partial.tar"), "partial");
    let local_staged = fx.ready("local-staged");
    write_file(&local_staged.join("cback.stage"), "");
    let local_missing = fx.base().join("collect/local-missing");
    let config = fx.write_config(
        "pool.toml",
        &fx.toml(
            "",
            "",
            &[
                remote_peer_toml("remote-ready", &remote_ready, ""),
                remote_peer_toml("remote-waiting", &remote_waiting, ""),
                local_peer_toml("local-staged", &local_staged, ""),
                local_peer_toml("local-missing", &local_missing, ""),
            ],
        ),
    );
    // The working dir is where remote probes land; everything else must stay as it is.
    let roots = [fx.staging(), fx.base().join("collect"), fx.lock_dir()];
    let before = snapshot(&roots);
    let config_s = p(&config);
    let out = ps(&["status", "--config", &config_s]);
    out.expect_code(0, "status");
    let expect = [
        ("remote-ready", "present", "absent"),
        ("remote-waiting", "absent", "absent"),
        ("local-staged", "present", "present"),
        (
            "local-missing",
            "collect dir missing",
            "collect dir missing",
        ),
    ];
    for (name, collect, stage) in expect {
        let found = out.stdout.lines().any(|line| {
            let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
            line == format!("{name} {collect} {stage}")
        });
        assert!(
            found,
            "status line for {name} should say {collect} {stage}\n{}",
            out.describe()
        );
    }
    let out_json = ps(&["status", "--config", &config_s, "--json"]);
    out_json.expect_code(0, "status --json");
    let states = json_of(&out_json);
    for (name, collect, stage) in expect {
        let state = states
            .as_array()
            .and_then(|list| list.iter().find(|s| s["peer"] == name))
            .unwrap_or_else(|| panic!("no {name} in {states:#}"));
        assert_eq!(state["collect_indicator"], collect == "present", "{name}");
        assert_eq!(state["stage_indicator"], stage == "present", "{name}");
        let dir = if collect.starts_with("collect dir") {
            "missing"
        } else {
            "present"
        };
        assert_eq!(state["collect_dir"], dir, "{name}");
    }
    assert_unchanged(&before, &snapshot(&roots), "status", &out);
    assert!(
        list_dir(&fx.work()).is_empty(),
        "status left files in the working dir: {:?}",
        list_dir(&fx.work())
    );
}

// ---------------------------------------------------------------------------------------------
// 11: single-peer subcommands with --config --peer

#[test]
fn single_peer_subcommands_take_the_peer_from_the_config() {
    let fx = Fx::with_sshd();
    let remote = fx.ready("remote");
    let waiting = fx.collect("waiting");
    write_file(&waiting.join("partial.tar"), "partial");
    let local = fx.ready("local");
    let config = fx.write_config(
        "pool.toml",
        &fx.toml(
            "",
            "",
            &[
                remote_peer_toml("remote-peer", &remote, ""),
                remote_peer_toml("waiting-peer", &waiting, ""),
                local_peer_toml("local-peer", &local, ""),
            ],
        ),
    );
    let config_s = p(&config);
    let peer_cmd = |cmd: &str, peer: &str, extra: &[&str]| -> Out {
        let mut args = vec![cmd, "--config", config_s.as_str(), "--peer", peer];
        args.extend_from_slice(extra);
        ps(&args)
    };

    peer_cmd("check", "remote-peer", &[]).expect_code(0, "check of a ready remote peer");
    peer_cmd("check", "waiting-peer", &[]).expect_code(1, "check of a waiting remote peer");
    peer_cmd("check", "local-peer", &[]).expect_code(0, "check of a ready local peer");
    peer_cmd("check", "no-such-peer", &[])
        .expect_code(2, "check of a peer not in the config")
        .expect_stderr_contains("no-such-peer", "names the missing peer");

    for (name, collect) in [("remote-peer", &remote), ("local-peer", &local)] {
        let expected = files_by_name(collect);
        let target = mkdir(&fx.base().join(format!("target-{name}")));
        peer_cmd("stage", name, &["--target", &p(&target)])
            .expect_code(0, &format!("stage {name}"));
        assert_same_files(&target, &expected, name);
        assert!(
            !collect.join("cback.stage").exists(),
            "stage alone marked {name}"
        );
        peer_cmd("mark", name, &[]).expect_code(0, &format!("mark {name}"));
        assert!(collect.join("cback.stage").is_file(), "mark {name}");
    }

    // The peer locks are taken in the config's lock dir: one held there from outside stops
    // a stage of that peer.
    let held = fx.lock_dir().join("peer-local-peer.lock");
    let mut holder = std::process::Command::new("flock")
        .arg(&held)
        .args(["sleep", "30"])
        .spawn()
        .expect("util-linux flock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !held.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    let target = mkdir(&fx.base().join("target-held"));
    let out = peer_cmd("stage", "local-peer", &["--target", &p(&target)]);
    let _ = holder.kill();
    let _ = holder.wait();
    out.expect_code(
        75,
        "stage of a peer whose lock is held in the config's lock dir",
    );
}
