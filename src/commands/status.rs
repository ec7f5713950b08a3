use serde::Serialize;

use crate::cli::StatusArgs;
use crate::config::{Config, DEFAULT_COLLECT_INDICATOR, DEFAULT_STAGE_INDICATOR};
use crate::error::Result;
use crate::peer::{self, Presence};

use super::Flags;

#[derive(Serialize)]
struct PeerState {
    peer: String,
    /// Whether each indicator is there; none when the peer could not be asked.
    collect_indicator: Option<bool>,
    stage_indicator: Option<bool>,
    /// "present" or "missing": a collect dir that is not there is not a peer still collecting.
    collect_dir: Option<&'static str>,
    #[serde(skip)]
    shown: [Option<Presence>; 2],
    error: Option<String>,
}

/// Probes both indicators of every peer; changes nothing. Exit 0 when every peer answered,
/// 69 when one could not be reached, 1 for any other failure.
pub fn run(flags: &Flags, args: StatusArgs) -> Result<i32> {
    if args.json {
        crate::peer::dry_run_lines_to_stderr();
    }
    let config = Config::load(&args.config)?;
    let selected = config.select(&args.only)?;
    let mut states = Vec::new();
    let mut exit = 0;
    let settings = crate::settings::Settings::resolve(flags, Some(&config));
    for peer_config in selected {
        let peer = peer::build(
            peer_config,
            settings.peer_options(std::time::Instant::now(), peer_config),
        )?;
        let mut state = PeerState {
            peer: peer_config.name.clone(),
            collect_indicator: None,
            stage_indicator: None,
            collect_dir: None,
            shown: [None, None],
            error: None,
        };
        let probe = peer
            .indicator(DEFAULT_COLLECT_INDICATOR)
            .and_then(|collect| Ok((collect, peer.indicator(DEFAULT_STAGE_INDICATOR)?)));
        match probe {
            Ok((collect, stage)) => {
                state.collect_indicator = Some(collect == Presence::Present);
                state.stage_indicator = Some(stage == Presence::Present);
                state.collect_dir = Some(match collect {
                    Presence::NoCollectDir => "missing",
                    _ => "present",
                });
                state.shown = [Some(collect), Some(stage)];
            }
            Err(err) => {
                exit = exit.max(err.exit_code());
                log::error!("{err}");
                state.error = Some(err.to_string());
            }
        }
        states.push(state);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&states).unwrap_or_default()
        );
    } else if !flags.quiet && !flags.dry_run {
        let width = states
            .iter()
            .map(|s| s.peer.len())
            .max()
            .unwrap_or(4)
            .max(4);
        println!(
            "{:<width$}  {:<19}  {:<19}",
            "PEER", DEFAULT_COLLECT_INDICATOR, DEFAULT_STAGE_INDICATOR
        );
        let show = |presence: Option<Presence>| presence.map_or("?", Presence::words);
        for state in &states {
            let tail = state
                .error
                .as_deref()
                .map(|e| format!("  ({})", crate::escape::escape(e)))
                .unwrap_or_default();
            println!(
                "{:<width$}  {:<19}  {:<19}{tail}",
                state.peer,
                show(state.shown[0]),
                show(state.shown[1])
            );
        }
    }
    Ok(exit)
}
