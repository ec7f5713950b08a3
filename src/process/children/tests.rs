use super::*;

#[test]
fn run_captures_output_and_status() {
    let done = Cmd::new("sh")
        .args(["-c", "echo out; echo err >&2; exit 3"])
        .run(Limits::default())
        .unwrap();
    assert_eq!(done.code(), 3);
    assert_eq!(done.stdout, b"out\n");
    assert_eq!(done.stderr_lines().collect::<Vec<_>>(), ["err"]);
}

#[test]
fn run_kills_a_child_and_its_children_past_the_deadline() {
    let start = Instant::now();
    let deadline = start + std::time::Duration::from_millis(300);
    // The grandchild holds stdout open: if only sh were killed, run would wait 30 s.
    let done = Cmd::new("sh")
        .args(["-c", "sleep 30; echo"])
        .run(Limits {
            deadline: Some(deadline),
            idle: None,
        })
        .unwrap();
    assert!(done.timed_out);
    assert!(!done.success());
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
}

/// peerstage blocks SIGINT, SIGTERM and SIGHUP in its threads; its children must not
/// inherit that, or an ssh told to end with SIGTERM would not (seen: every plain control
/// master waited out the two seconds before SIGKILL).

#[test]
fn children_start_with_no_signal_blocked() {
    use nix::sys::signal::{SigSet, Signal};
    let blocked = std::thread::spawn(|| {
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGINT);
        set.thread_block().unwrap();
        let mask = |finished: Finished| {
            String::from_utf8(finished.stdout)
                .unwrap()
                .trim()
                .to_string()
        };
        // grep itself, not through a shell: dash clears its mask when it starts.
        let read_mask = Cmd::new("grep").args(["SigBlk", "/proc/self/status"]);
        let captured = mask(read_mask.run(Limits::default()).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let mut piped = read_mask.spawn_piped(&dir.path().join("err")).unwrap();
        let mut out = String::new();
        io::Read::read_to_string(piped.child.stdout.as_mut().unwrap(), &mut out).unwrap();
        (captured, out.trim().to_string())
    })
    .join()
    .unwrap();
    assert_eq!(blocked.0, "SigBlk:\t0000000000000000");
    assert_eq!(blocked.1, "SigBlk:\t0000000000000000");
}

#[test]
fn a_child_that_misses_the_first_sigterm_gets_another_before_sigkill() {
    // Sleeps through the first SIGTERM, as an ssh master that takes it just before
    // poll(2) does, and ends cleanly on the second: only a repeated SIGTERM gives exit 7.
    let script = "n=0; trap 'n=$((n+1)); [ $n -ge 2 ] && exit 7' TERM; \
                  echo ready; while :; do sleep 0.05; done";
    let child = Cmd::new("sh").args(["-c", script]).start().unwrap();
    let done = child
        .finish(Limits {
            deadline: Some(Instant::now() + std::time::Duration::from_millis(200)),
            idle: None,
        })
        .unwrap();
    assert!(done.timed_out);
    assert_eq!(done.code(), 7, "ended by a signal: {:?}", done.status);
}

#[test]
fn a_child_that_moves_nothing_is_killed_at_the_idle_timeout_and_a_busy_one_is_not() {
    let idle = Limits {
        deadline: None,
        idle: Some(std::time::Duration::from_millis(700)),
    };
    let start = Instant::now();
    let silent = Cmd::new("sh").args(["-c", "sleep 30"]).run(idle).unwrap();
    assert_eq!(
        silent.expired,
        Some(Expired::Idle(std::time::Duration::from_millis(700)))
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
    // Prints every 0.2 s for 2 s: never idle for 0.7 s.
    let busy = Cmd::new("sh")
        .args([
            "-c",
            "for i in 1 2 3 4 5 6 7 8 9 10; do echo $i; sleep 0.2; done",
        ])
        .run(idle)
        .unwrap();
    assert!(busy.success(), "{busy:?}");
    assert_eq!(busy.stdout.len(), 21);
}

#[test]
fn output_is_kept_up_to_its_limit_and_the_child_still_ends() {
    let big = "head -c 5000000 /dev/zero; yes | head -c 3000000 >&2; echo last-words >&2";
    let done = Cmd::new("sh")
        .args(["-c", big])
        .start_capped(1000)
        .unwrap()
        .finish(Limits::default())
        .unwrap();
    assert!(done.success());
    assert_eq!(done.stdout.len(), 1000);
    assert!(done.stdout_cut);
    assert!(done.stderr.len() < STDERR_HEAD + STDERR_TAIL + 16);
    assert_eq!(done.stderr_lines().next(), Some("y"));
    assert_eq!(done.stderr_lines().last(), Some("last-words"));
}

#[test]
fn background_children_are_killed_when_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let child = Cmd::new("sleep")
        .arg("30")
        .spawn(&dir.path().join("err"))
        .unwrap();
    assert!(!child.exited());
    let start = Instant::now();
    drop(child);
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
}
