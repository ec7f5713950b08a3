use crate::cli::ConfigCommand;
use crate::config::Config;
use crate::error::Result;
use crate::peer::{self, PeerOptions};

use super::Flags;

pub fn run(flags: &Flags, command: ConfigCommand) -> Result<i32> {
    match command {
        ConfigCommand::Check { config: path } => {
            let config = Config::load(&path)?;
            // Building each peer also resolves its rcp/rsh commands, as a run would.
            for peer_config in &config.peers {
                peer::build(peer_config, PeerOptions::default())?;
            }
            if !flags.quiet {
                println!(
                    "config {}: valid, {} peers",
                    path.display(),
                    config.peers.len()
                );
            }
        }
        ConfigCommand::Show { config: path } => print!("{}", Config::load(&path)?.to_toml()),
    }
    Ok(0)
}
