use serde::Serialize;

use crate::cli::LocksArgs;
use crate::config::Config;
use crate::error::Result;
use crate::lock;

use super::Flags;
use crate::settings::Settings;

#[derive(Serialize)]
struct Row {
    lock: String,
    file: String,
    held: bool,
    owner_pid: Option<u32>,
    owner_alive: Option<bool>,
}

pub fn run(flags: &Flags, args: LocksArgs) -> Result<i32> {
    let dir = match &args.config {
        Some(path) => Settings::resolve(flags, Some(&Config::load(path)?)).lock_dir,
        None => Settings::resolve(flags, None).lock_dir,
    };
    let locks = if dir.exists() {
        lock::list(&dir)?
    } else {
        Vec::new()
    };
    let rows: Vec<Row> = locks
        .into_iter()
        .map(|info| Row {
            lock: info.name,
            file: info.path.display().to_string(),
            held: info.held,
            owner_pid: info.owner_pid,
            owner_alive: info.owner_alive,
        })
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    } else if !flags.quiet {
        println!("lock dir {}", dir.display());
        for row in &rows {
            let owner = match (row.owner_pid, row.owner_alive) {
                (Some(pid), Some(true)) => format!("pid {pid} (alive)"),
                (Some(pid), _) => format!("pid {pid} (dead)"),
                (None, _) => "-".to_string(),
            };
            let state = if row.held { "held" } else { "free" };
            println!("{:<40}  {state:<4}  {owner}", row.lock);
        }
    }
    Ok(0)
}
