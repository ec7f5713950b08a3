use serde::Serialize;

use crate::cli::LocksArgs;
use crate::config::Config;
use crate::error::Result;
use crate::lock::{self, Lock};

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
    let config = args.config.as_deref().map(Config::load).transpose()?;
    let dir = Settings::resolve(flags, config.as_ref()).lock_dir;
    let mut locks = lock::list(&dir)?;
    // A config's own locks: its run lock and its peers' (the lock dir may serve several).
    if let (Some(config), false) = (&config, args.all) {
        let mut names = vec![Lock::run_file_name(&config.staging_dir)];
        names.extend(
            config
                .peers
                .iter()
                .map(|peer| Lock::peer_file_name(&peer.name)),
        );
        locks.retain(|info| {
            info.path
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| names.iter().any(|wanted| wanted == name))
        });
    }
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
