//! Commands run at the job events of a pool run, as Bacula/Bareos run scripts at job events:
//! run start, before and after each peer, run end. They are told what happened through
//! `PEERSTAGE_*` environment variables. Hook commands come only from the config file; they
//! are split like a shell would and run directly, never through one.

use std::time::Instant;

use crate::process::Cmd;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    RunStart,
    PrePeer,
    PostPeer,
    RunEnd,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::RunStart => "run-start",
            Event::PrePeer => "pre-peer",
            Event::PostPeer => "post-peer",
            Event::RunEnd => "run-end",
        }
    }
}

/// Runs each command of an event in order, stopping at the first that fails. The hooks'
/// output goes to stderr, so that `--json` on stdout stays one parseable document.
/// Returns the first failure as one line.
pub fn run(
    commands: &[String],
    event: Event,
    vars: &[(&str, String)],
    dry_run: bool,
    deadline: Option<Instant>,
) -> Result<(), String> {
    for line in commands {
        let cmd =
            Cmd::parse(line, &format!("{} hook", event.as_str())).map_err(|err| err.to_string())?;
        if dry_run {
            crate::peer::print_dry_run(format_args!("{cmd}   # {} hook", event.as_str()));
            continue;
        }
        log::info!("{} hook: {cmd}", event.as_str());
        let mut cmd = cmd.env("PEERSTAGE_EVENT", event.as_str());
        for (name, value) in vars {
            cmd = cmd.env(format!("PEERSTAGE_{name}"), value);
        }
        let running = cmd
            .start_into_stderr()
            .map_err(|err| format!("{} hook {line:?}: cannot run: {err}", event.as_str()))?;
        let output = running
            .finish(crate::limits::Limits {
                deadline,
                idle: None,
            })
            .map_err(|err| format!("{} hook {line:?}: {err}", event.as_str()))?;
        if output.timed_out {
            return Err(format!(
                "{} hook {line:?}: timed out, killed",
                event.as_str()
            ));
        }
        if !output.status.success() {
            let status = output
                .status
                .code()
                .map_or_else(|| "a signal".to_string(), |code| format!("status {code}"));
            return Err(format!(
                "{} hook {line:?} failed with {status}",
                event.as_str()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_see_their_variables_and_stop_at_the_first_failure() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env");
        let script = format!(
            "sh -c 'echo $PEERSTAGE_EVENT $PEERSTAGE_PEER > {}'",
            out.display()
        );
        run(
            &[script],
            Event::PrePeer,
            &[("PEER", "db1".into())],
            false,
            None,
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "pre-peer db1\n");

        let marker = dir.path().join("second");
        let commands = ["false".to_string(), format!("touch {}", marker.display())];
        let err = run(&commands, Event::RunStart, &[], false, None).unwrap_err();
        assert_eq!(err, r#"run-start hook "false" failed with status 1"#);
        assert!(!marker.exists());
    }

    /// A hook past its deadline is ended with what it started: a grandchild left behind
    /// would hold our stderr open.
    #[test]
    fn a_hook_past_its_deadline_is_ended_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let hook = format!("sh -c 'sleep 30 & echo $! > {}; wait'", pid_file.display());
        let started = Instant::now();
        let deadline = started + std::time::Duration::from_millis(500);
        let err = run(&[hook], Event::PrePeer, &[], false, Some(deadline)).unwrap_err();
        assert!(err.ends_with("timed out, killed"), "{err}");
        // Not by waiting for the sleep to end by itself.
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let alive = || {
            std::path::Path::new(&format!("/proc/{pid}")).exists()
                && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .unwrap_or_default()
                    .contains(") Z ")
        };
        // A signalled process takes a moment to go; one left alive stays for 30 s.
        let given_up = Instant::now() + std::time::Duration::from_secs(3);
        while alive() && Instant::now() < given_up {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(!alive(), "the hook's sleep {pid} outlived it");
    }

    #[test]
    fn dry_run_runs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("m");
        run(
            &[format!("touch {}", marker.display())],
            Event::RunEnd,
            &[],
            true,
            None,
        )
        .unwrap();
        assert!(!marker.exists());
    }
}
