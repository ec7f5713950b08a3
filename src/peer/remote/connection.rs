//! What a remote peer's configured commands say about how to reach it.
//!
//! As in Cedar Backup, the rcp command is how a peer is reached for staging: probing,
//! copying, verifying and the stage indicator need only what it reaches, and its connection
//! options (port, identity, config file, `-o` options, jump host, IPv4/6, compression) apply
//! to every one of those steps, the shared connection included. When it is OpenSSH's scp,
//! the ssh that scp would start is worked out from it (`ssh_for_scp`), and that ssh runs
//! the shared connection and the listing. The rsh command is needed only for managed
//! actions and `exec`.

use std::path::{Path, PathBuf};

use crate::process::{resolve, Cmd};

/// Options added to OpenSSH commands so that a peer that hangs or stalls cannot hold the run:
/// no prompt, a bounded connect, and a dead link noticed within a minute. They come after
/// the configured options, and ssh keeps the first value it sees, so a config can override.
pub const OPENSSH_OPTIONS: [&str; 8] = [
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=30",
    "-o",
    "ServerAliveInterval=15",
    "-o",
    "ServerAliveCountMax=4",
];

/// scp's options that take a value.
const SCP_VALUE_FLAGS: &str = "cDFiJlPoSX";
/// ssh's options that take a value.
const SSH_VALUE_FLAGS: &str = "BbcDEeFIiJLlmOoPpQRSWw";

/// How an scp reads the remote path of an upload: through the remote shell (the legacy
/// scp/rcp protocol) or literally (SFTP, OpenSSH's default since 9.0). Downloads are glob
/// patterns in both, so backslash escapes work there either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScpProtocol {
    Legacy,
    Sftp,
}

/// Whether `cmd` runs the program `name` (scp, ssh), by its file name.
pub fn is_program(cmd: &Cmd, name: &str) -> bool {
    Path::new(cmd.program())
        .file_name()
        .is_some_and(|program| program == name)
}

/// The ssh that an OpenSSH scp command would start, with the scp's connection options as
/// ssh options (`-P` becomes `-p`; `-F`, `-i`, `-o`, `-J`, `-c`, `-4`, `-6`, `-C` stay) and
/// no others: the program named with `-S`, else the ssh beside the scp, else ssh on PATH.
/// None when the rcp command is not OpenSSH's scp or its words cannot be read as options.
pub fn ssh_for_scp(rcp: &Cmd) -> Option<Cmd> {
    if !is_program(rcp, "scp") {
        return None;
    }
    let options = options(rcp, SCP_VALUE_FLAGS)?;
    let program = match options.iter().find(|(flag, _)| *flag == 'S') {
        Some((_, program)) => resolve(program)?,
        None => {
            let beside = Path::new(rcp.program()).with_file_name("ssh");
            if beside.is_file() {
                beside
            } else {
                resolve("ssh").unwrap_or_else(|| PathBuf::from("/usr/bin/ssh"))
            }
        }
    };
    let mut ssh = Cmd::new(program);
    for (flag, value) in options {
        ssh = match flag {
            'P' => ssh.arg("-p").arg(value),
            'F' | 'i' | 'o' | 'J' | 'c' => ssh.arg(format!("-{flag}")).arg(value),
            '4' | '6' | 'C' | 'A' => ssh.arg(format!("-{flag}")),
            _ => ssh,
        };
    }
    Some(ssh)
}

/// Whether the copy itself may go over the SFTP session instead of through scp, and if so
/// whether it keeps the files' times and modes (`scp -p`): only when scp would do nothing
/// more than the session does. Its connection options are the session's already; -B, -q,
/// -C, -p, -s, -T and -A change nothing else. Anything else (a bandwidth limit, -r, -v,
/// -3, -D, -X...) is left to scp itself.
pub fn copy_over_sftp(rcp: &Cmd) -> Option<bool> {
    let flags = scp_flags(rcp)?;
    flags
        .iter()
        .all(|&flag| "BqCpsTA46FioJPcS".contains(flag))
        .then(|| flags.contains(&'p'))
}

/// What a bandwidth limit does to a copy through the rcp command itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcpLimit {
    /// No limit applies.
    None,
    /// OpenSSH's scp: the limit goes to it as `-l` (Kbit/s).
    Pass(u64),
    /// The rcp command has a `-l` of its own, which is kept.
    Own,
    /// Not OpenSSH's scp (or not readable as its options): there is no telling how it would
    /// take a limit.
    Foreign,
}

/// How `rate` (the tightest limit of the copy, if any) reaches a copy through `rcp`.
pub fn rcp_limit(rcp: &Cmd, rate: Option<crate::rate::Rate>) -> RcpLimit {
    let Some(rate) = rate else {
        return RcpLimit::None;
    };
    match scp_flags(rcp).filter(|_| is_program(rcp, "scp")) {
        None => RcpLimit::Foreign,
        Some(flags) if flags.contains(&'l') => RcpLimit::Own,
        Some(_) => RcpLimit::Pass(rate.kbits()),
    }
}

/// The protocol the rcp command's flags ask for (scp's -O or -s), if any.
pub fn protocol_flag(rcp: &Cmd) -> Option<ScpProtocol> {
    scp_flags(rcp)?.into_iter().find_map(|flag| match flag {
        'O' => Some(ScpProtocol::Legacy),
        's' => Some(ScpProtocol::Sftp),
        _ => None,
    })
}

/// Which protocol an scp uses: `-O` forces legacy, `-s` SFTP; otherwise the scp binary's
/// default, which its usage text tells (scp 9.0+ lists `-O` and defaults to SFTP).
pub fn scp_protocol(rcp: &Cmd) -> ScpProtocol {
    if let Some(protocol) = protocol_flag(rcp) {
        return protocol;
    }
    let usage = crate::limits::Limits {
        deadline: Some(std::time::Instant::now() + std::time::Duration::from_secs(10)),
        idle: None,
    };
    match Cmd::new(rcp.program()).run(usage) {
        Ok(usage) if usage.stderr.contains("usage: scp [") && usage.stderr.contains('O') => {
            ScpProtocol::Sftp
        }
        _ => ScpProtocol::Legacy,
    }
}

/// The rcp command with `-O` (the legacy protocol), for a peer without an SFTP server.
pub fn with_legacy_protocol(rcp: &Cmd) -> Cmd {
    Cmd::new(rcp.program()).arg("-O").args(rcp.get_args())
}

/// Whether two ssh command lines connect the same way (same program, config file,
/// identity, port, options, login...): only then may one connection serve both.
pub fn same_connection(a: &Cmd, b: &Cmd) -> bool {
    let connection = |cmd: &Cmd| {
        let mut kept: Vec<_> = options(cmd, SSH_VALUE_FLAGS)?
            .into_iter()
            .filter(|(flag, _)| "pFioJc46lC".contains(*flag))
            .collect();
        kept.sort();
        Some(kept)
    };
    is_program(a, "ssh")
        && is_program(b, "ssh")
        && a.program() == b.program()
        && connection(a).is_some_and(|options| Some(options) == connection(b))
}

/// Every flag of an scp command line, in order; None when its words cannot be read as
/// options.
pub fn scp_flags(rcp: &Cmd) -> Option<Vec<char>> {
    Some(
        options(rcp, SCP_VALUE_FLAGS)?
            .into_iter()
            .map(|(flag, _)| flag)
            .collect(),
    )
}

/// The options of a command line in order, each with its value ("" for a flag); None when
/// a word is not an option (a host, a path: then nothing is assumed).
fn options(cmd: &Cmd, takes_value: &str) -> Option<Vec<(char, String)>> {
    let mut kept = Vec::new();
    let mut words = cmd.get_args().iter();
    while let Some(word) = words.next() {
        let flags = word.to_str()?.strip_prefix('-')?;
        for (i, flag) in flags.char_indices() {
            if takes_value.contains(flag) {
                let rest = &flags[i + flag.len_utf8()..];
                let value = if rest.is_empty() {
                    words.next()?.to_str()?.to_string()
                } else {
                    rest.to_string()
                };
                kept.push((flag, value));
                break;
            }
            kept.push((flag, String::new()));
        }
    }
    Some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(line: &str) -> Cmd {
        let words = shell_words::split(line).unwrap();
        Cmd::new(&words[0]).args(&words[1..])
    }

    #[test]
    fn the_ssh_of_an_scp_carries_its_connection_options_and_no_others() {
        let ssh = ssh_for_scp(&cmd(
            "/usr/bin/scp -B -q -C -P 2330 -o Port=9 -i /k -F /c -l 800 -J j -4 -pv",
        ))
        .unwrap();
        assert_eq!(
            ssh.to_string(),
            "/usr/bin/ssh -C -p 2330 -o 'Port=9' -i /k -F /c -J j -4"
        );
        let ssh = ssh_for_scp(&cmd("/usr/bin/scp -P2330 -i/k")).unwrap();
        assert_eq!(ssh.to_string(), "/usr/bin/ssh -p 2330 -i /k");
        assert!(ssh_for_scp(&cmd("/usr/local/bin/my-rcp -P 1")).is_none());
        assert!(ssh_for_scp(&cmd("/usr/bin/scp host:x")).is_none());
    }

    #[test]
    fn the_copy_goes_over_sftp_only_when_scp_would_do_nothing_more() {
        assert_eq!(copy_over_sftp(&cmd("/usr/bin/scp -B -q -C")), Some(false));
        assert_eq!(copy_over_sftp(&cmd("/usr/bin/scp -Bqp -P 22")), Some(true));
        assert_eq!(copy_over_sftp(&cmd("/usr/bin/scp -l 800")), None);
        assert_eq!(copy_over_sftp(&cmd("/usr/bin/scp -v")), None);
    }

    #[test]
    fn a_limit_reaches_scp_as_its_l_unless_it_has_its_own() {
        let rate = "10MiB/s".parse().ok();
        assert_eq!(
            rcp_limit(&cmd("/usr/bin/scp -B -q -C"), rate),
            RcpLimit::Pass(83886)
        );
        assert_eq!(rcp_limit(&cmd("scp -O -F /c"), rate), RcpLimit::Pass(83886));
        assert_eq!(
            rcp_limit(&cmd("/usr/bin/scp -B -l 800"), rate),
            RcpLimit::Own
        );
        assert_eq!(rcp_limit(&cmd("/usr/bin/scp -Bl800"), rate), RcpLimit::Own);
        // -F's value is not a flag.
        assert_eq!(
            rcp_limit(&cmd("/usr/bin/scp -F l"), rate),
            RcpLimit::Pass(83886)
        );
        assert_eq!(
            rcp_limit(&cmd("/usr/local/bin/my-rcp -P 1"), rate),
            RcpLimit::Foreign
        );
        assert_eq!(
            rcp_limit(&cmd("/usr/bin/scp host:x"), rate),
            RcpLimit::Foreign
        );
        assert_eq!(rcp_limit(&cmd("/usr/bin/scp -B"), None), RcpLimit::None);
    }

    #[test]
    fn protocol_from_flags() {
        assert_eq!(
            scp_protocol(&cmd("/usr/bin/scp -B -O -q")),
            ScpProtocol::Legacy
        );
        assert_eq!(
            scp_protocol(&cmd("/usr/bin/scp -F /x/O -s")),
            ScpProtocol::Sftp
        );
        assert_eq!(scp_protocol(&cmd("/usr/bin/rcp -p")), ScpProtocol::Legacy);
        assert_eq!(
            with_legacy_protocol(&cmd("/usr/bin/scp -B -q")).to_string(),
            "/usr/bin/scp -O -B -q"
        );
    }

    #[test]
    fn same_connection_when_the_connection_options_agree() {
        assert!(same_connection(&cmd("/usr/bin/ssh"), &cmd("/usr/bin/ssh")));
        assert!(same_connection(
            &cmd("ssh -F /c -p 2222 -i /k"),
            &cmd("ssh -i/k -p2222 -F /c")
        ));
        assert!(!same_connection(&cmd("ssh -F /c"), &cmd("ssh")));
        assert!(!same_connection(&cmd("ssh -o Port=1"), &cmd("ssh")));
        assert!(!same_connection(&cmd("ssh"), &cmd("ssh -l backup")));
        assert!(!same_connection(&cmd("ssh -C"), &cmd("ssh")));
        assert!(!same_connection(&cmd("ssh host"), &cmd("ssh")));
        assert!(!same_connection(&cmd("/usr/bin/ssh"), &cmd("/opt/bin/ssh")));
    }
}
