//! Progress for a person at a terminal: one line on stderr, redrawn four times a second while
//! files are copying, with the files and bytes done of what the peers listed, the rate and
//! the time left. Never into a pipe, a cron mail or a `--json` run, and never mixed with a
//! message: a log line clears it first (`print_above`) and the next tick draws it again.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::units;

/// Whether progress may be drawn: only for a person at a terminal.
pub fn wanted(json: bool, quiet: bool) -> bool {
    use std::io::IsTerminal;
    !json && !quiet && std::io::stderr().is_terminal()
}

/// What one peer has moved so far, and what it has to move as far as its listing says.
#[derive(Debug, Default)]
pub struct Meter {
    pub files_done: AtomicU64,
    pub bytes_done: AtomicU64,
    pub files_listed: AtomicU64,
    pub bytes_listed: AtomicU64,
    /// The whole listing is in, so the listed totals are what there is to move (a local
    /// collect dir is read as it is copied, and never says so).
    pub listing_complete: AtomicBool,
    /// The peer's work is over (whatever became of it).
    pub finished: AtomicBool,
}

impl Meter {
    pub fn listed(&self, bytes: u64) {
        self.files_listed.fetch_add(1, Ordering::Relaxed);
        self.bytes_listed.fetch_add(bytes, Ordering::Relaxed);
    }
    pub fn moved(&self, bytes: u64) {
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }
    pub fn file_done(&self) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
    }
    pub fn listing_complete(&self) {
        self.listing_complete.store(true, Ordering::Relaxed);
    }
}

/// Whether a progress line is on the screen now; every write to stderr goes through it.
static DRAWN: Mutex<bool> = Mutex::new(false);

/// Writes `text` (whole lines) to stderr, clearing the progress line first if one is drawn.
pub fn print_above(text: &str) {
    let mut drawn = DRAWN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut err = std::io::stderr().lock();
    if *drawn {
        let _ = err.write_all(b"\r\x1b[K");
        *drawn = false;
    }
    let _ = err.write_all(text.as_bytes());
}

/// The progress line, drawn by a thread of its own until dropped.
pub struct Display {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Display {
    /// Starts drawing the progress of `meters` (one per peer, by name); `finished_peers`
    /// counts the peers whose work is over; `limit` is the bandwidth limit of them all, shown
    /// beside the rate they really go at.
    pub fn start(
        meters: Vec<(String, Arc<Meter>)>,
        finished_peers: Arc<AtomicUsize>,
        limit: Option<crate::rate::Rate>,
    ) -> Display {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("progress".to_string())
            .spawn(move || {
                let started = Instant::now();
                let mut rate = Rate::default();
                while !stopping.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(250));
                    let mut line = render(&meters, &finished_peers, started, &mut rate, limit);
                    // A line longer than the terminal wraps, and \r would redraw only the
                    // last piece of it.
                    truncate(&mut line, terminal_width().saturating_sub(1));
                    let mut drawn = DRAWN
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    let mut err = std::io::stderr().lock();
                    let _ = write!(err, "\r\x1b[K{line}");
                    let _ = err.flush();
                    *drawn = true;
                }
            })
            .ok();
        Display { stop, thread }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // The last line stays, as a record of what was done.
        let mut drawn = DRAWN
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *drawn {
            let _ = std::io::stderr().write_all(b"\n");
            *drawn = false;
        }
    }
}

/// Bytes per second, smoothed over the last few seconds.
#[derive(Default)]
struct Rate {
    last: Option<(Instant, u64)>,
    per_second: f64,
}

impl Rate {
    fn update(&mut self, now: Instant, bytes: u64) -> f64 {
        if let Some((then, before)) = self.last {
            let seconds = now.duration_since(then).as_secs_f64();
            if seconds > 0.0 {
                let current = bytes.saturating_sub(before) as f64 / seconds;
                // About a five-second memory at four ticks a second.
                self.per_second = if self.per_second == 0.0 {
                    current
                } else {
                    self.per_second * 0.95 + current * 0.05
                };
            }
        }
        self.last = Some((now, bytes));
        self.per_second
    }
}

fn render(
    meters: &[(String, Arc<Meter>)],
    finished_peers: &AtomicUsize,
    started: Instant,
    rate: &mut Rate,
    limit: Option<crate::rate::Rate>,
) -> String {
    let sum = |field: fn(&Meter) -> &AtomicU64| -> u64 {
        meters
            .iter()
            .map(|(_, meter)| field(meter).load(Ordering::Relaxed))
            .sum()
    };
    let files = sum(|m| &m.files_done);
    let bytes = sum(|m| &m.bytes_done);
    let files_listed = sum(|m| &m.files_listed);
    let bytes_listed = sum(|m| &m.bytes_listed);
    let per_second = rate.update(Instant::now(), bytes);
    // A total is only worth showing when every peer still at work has listed all it has.
    let totals_known = meters.iter().all(|(_, meter)| {
        meter.finished.load(Ordering::Relaxed) || meter.listing_complete.load(Ordering::Relaxed)
    });
    let mut line = format!(
        "[{}/{} peers] ",
        finished_peers.load(Ordering::Relaxed),
        meters.len()
    );
    if totals_known && bytes_listed > 0 && bytes <= bytes_listed {
        line.push_str(&format!(
            "{} of {} files, {} of {}",
            files,
            files_listed,
            units::size(bytes),
            units::size(bytes_listed)
        ));
    } else {
        line.push_str(&format!("{} files, {}", files, units::size(bytes)));
    }
    if per_second > 0.0 {
        line.push_str(&format!(", {}/s", units::size(per_second as u64)));
        if let Some(limit) = limit {
            line.push_str(&format!(" (limit {limit})"));
        }
        if totals_known && bytes_listed > bytes {
            let left = (bytes_listed - bytes) as f64 / per_second;
            line.push_str(&format!(", {} left", clock(left as u64)));
        }
    } else {
        line.push_str(&format!(", {} s", started.elapsed().as_secs()));
    }
    // The peers at work, with how far each has got.
    let busy: Vec<String> = meters
        .iter()
        .filter(|(_, meter)| !meter.finished.load(Ordering::Relaxed))
        .filter(|(_, meter)| meter.bytes_done.load(Ordering::Relaxed) > 0)
        .take(3)
        .map(|(name, meter)| {
            let done = meter.bytes_done.load(Ordering::Relaxed);
            let listed = meter.bytes_listed.load(Ordering::Relaxed);
            let complete = meter.listing_complete.load(Ordering::Relaxed);
            match (done * 100).checked_div(listed) {
                Some(percent) if complete && done <= listed => format!("{name} {percent}%"),
                _ => format!("{name} {}", units::size(done)),
            }
        })
        .collect();
    if !busy.is_empty() {
        line.push_str(" | ");
        line.push_str(&busy.join(", "));
    }
    crate::escape::escape(&line).into_owned()
}

fn truncate(line: &mut String, width: usize) {
    if let Some((cut, _)) = line.char_indices().nth(width) {
        line.truncate(cut);
    }
}

nix::ioctl_read_bad!(window_size, nix::libc::TIOCGWINSZ, nix::libc::winsize);

/// Columns of the terminal on stderr; 80 when it will not say.
fn terminal_width() -> usize {
    let mut size = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct it is given, which lives here.
    match unsafe { window_size(nix::libc::STDERR_FILENO, &mut size) } {
        Ok(_) if size.ws_col > 0 => usize::from(size.ws_col),
        _ => 80,
    }
}

/// `0:42`, `1:05:09`.
fn clock(seconds: u64) -> String {
    if seconds >= 3600 {
        format!(
            "{}:{:02}:{:02}",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60
        )
    } else {
        format!("{}:{:02}", seconds / 60, seconds % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_done_of_listed_rate_and_time_left() {
        let meter = Arc::new(Meter::default());
        for _ in 0..4 {
            meter.listed(1 << 20);
        }
        meter.moved(1 << 20);
        meter.file_done();
        meter.listing_complete();
        let peers = vec![("db1".to_string(), Arc::clone(&meter))];
        let finished = AtomicUsize::new(0);
        let mut rate = Rate::default();
        let started = Instant::now();
        render(&peers, &finished, started, &mut rate, None);
        rate.last = Some((Instant::now() - Duration::from_secs(1), 0));
        rate.per_second = 0.0;
        let line = render(&peers, &finished, started, &mut rate, None);
        assert!(
            line.starts_with("[0/1 peers] 1 of 4 files, 1.00 MiB of 4.00 MiB"),
            "{line}"
        );
        assert!(line.contains("/s, 0:0"), "{line}");
        assert!(line.ends_with("| db1 25%"), "{line}");
        rate.last = Some((Instant::now() - Duration::from_secs(1), 0));
        let limit = "10MiB/s".parse().ok();
        let line = render(&peers, &finished, started, &mut rate, limit);
        assert!(line.contains("/s (limit 10.0 MiB/s), 0:0"), "{line}");
        let mut long = "x".repeat(100) + "é";
        truncate(&mut long, 101);
        assert_eq!(long.chars().count(), 101);
        truncate(&mut long, 79);
        assert_eq!(long, "x".repeat(79));
        assert_eq!(clock(3909), "1:05:09");
        assert_eq!(clock(42), "0:42");
    }
}
