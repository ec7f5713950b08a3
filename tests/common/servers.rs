//! Servers and accounts for `tests/servers.rs`: the peers peerstage meets in the field.
//!
//! - OpenSSH's sshd with or without an sftp subsystem, with any extra config (an sftp-only
//!   account is a `Match User` block);
//! - Dropbear, with the sftp-server it runs for the sftp subsystem, or without one (started
//!   in a private mount namespace where `/usr/lib/sftp-server` is `/dev/null`; the machine's
//!   file is never changed);
//! - test accounts whose login shells are bash, fish, tcsh, bash printing a banner, and an
//!   sftp-only account.
//!
//! Every server listens on a free 127.0.0.1 port, with host and client keys in a temp dir of
//! its own; clients get an ssh_config (`-F`) that sends every host name to it. The machine's
//! sshd, `~/.ssh` and `/etc/ssh` are never touched, and root never logs in to Dropbear.
//!
//! The accounts (`peerstage-t-*`) are created once per test process with `useradd` and kept:
//! tests running in other processes at the same time use them too. Their homes live under
//! [`HOMES`] (a fixed root-owned dir: an account's home is one path for every process).
//! OpenSSH's test sshd reads a fixed `AuthorizedKeysFile`, so the accounts need nothing there;
//! Dropbear reads `~/.ssh/authorized_keys`, where each Dropbear server adds its client key
//! while it runs (under a lock, replaced whole, so a parallel server's login never sees half
//! a file) and takes it out again when it stops.

use std::fs;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::common::*;

pub const DROPBEAR: &str = "/usr/sbin/dropbear";
pub const DROPBEARKEY: &str = "/usr/bin/dropbearkey";
/// The sftp server Dropbear runs for the sftp subsystem (Debian: openssh-sftp-server).
pub const SFTP_SERVER: &str = "/usr/lib/sftp-server";

/// Where the test accounts' homes are (root's, 0755; each home is its account's).
pub const HOMES: &str = "/tmp/peerstage-t-homes";

/// What the banner account's `~/.bashrc` prints on stdout, for every session.
pub const BANNER: &str = "Welcome to peer\n";

const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Fails the test: one that cannot run must not pass.
#[track_caller]
pub fn require_root(what: &str) {
    assert!(
        is_root(),
        "{what} needs root (it creates accounts and starts servers that switch to them); \
         run the tests as root, as CI does"
    );
}

#[track_caller]
fn require_tool(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is not installed: apt-get install {package} (scripts/test does)"
    );
}

// ---------------------------------------------------------------------------------------------
// Accounts

/// The test accounts, by login shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Login {
    Bash,
    Fish,
    Tcsh,
    /// bash, with a `~/.bashrc` that prints [`BANNER`] on stdout for every session.
    Banner,
    /// /bin/sh, and `ForceCommand internal-sftp` on servers started with [`sftp_only_config`].
    SftpOnly,
}

impl Login {
    /// The accounts whose login shell runs remote commands.
    pub const SHELLS: [Login; 4] = [Login::Bash, Login::Fish, Login::Tcsh, Login::Banner];

    pub fn name(self) -> &'static str {
        match self {
            Login::Bash => "peerstage-t-bash",
            Login::Fish => "peerstage-t-fish",
            Login::Tcsh => "peerstage-t-tcsh",
            Login::Banner => "peerstage-t-banner",
            Login::SftpOnly => "peerstage-t-sftp",
        }
    }

    pub fn shell(self) -> &'static str {
        match self {
            Login::Bash | Login::Banner => "/bin/bash",
            Login::Fish => "/usr/bin/fish",
            Login::Tcsh => "/usr/bin/tcsh",
            Login::SftpOnly => "/bin/sh",
        }
    }

    fn package(self) -> &'static str {
        match self {
            Login::Fish => "fish",
            Login::Tcsh => "tcsh",
            _ => "bash",
        }
    }

    /// What a session prints on stdout before a command's own output.
    pub fn banner(self) -> &'static str {
        if self == Login::Banner {
            BANNER
        } else {
            ""
        }
    }

    /// A remote command that prints something only this login shell knows (its version
    /// variable), to prove which shell ran it.
    pub fn shell_probe(self) -> &'static str {
        match self {
            Login::Bash | Login::Banner => "echo shell=bash-$BASH_VERSION",
            Login::Fish => "echo shell=fish-$FISH_VERSION",
            Login::Tcsh => "echo shell=tcsh-$tcsh",
            Login::SftpOnly => "true",
        }
    }

    /// What `shell_probe` prints before the version.
    pub fn shell_tag(self) -> &'static str {
        match self {
            Login::Bash | Login::Banner => "shell=bash-",
            Login::Fish => "shell=fish-",
            Login::Tcsh => "shell=tcsh-",
            Login::SftpOnly => "",
        }
    }
}

/// A test account, created by [`account`].
#[derive(Debug)]
pub struct Account {
    pub name: &'static str,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl Account {
    /// Hands `path` to this account (so it can read and write a collect dir, say).
    pub fn give(&self, path: &Path) {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .unwrap_or_else(|e| panic!("chown {} to {}: {e}", path.display(), self.name));
    }
}

/// The account with this login shell, created (or brought back to what the tests expect)
/// once per test process. Root only: panics otherwise.
pub fn account(login: Login) -> &'static Account {
    static ACCOUNTS: [OnceLock<Account>; 5] = [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ];
    let slot = match login {
        Login::Bash => 0,
        Login::Fish => 1,
        Login::Tcsh => 2,
        Login::Banner => 3,
        Login::SftpOnly => 4,
    };
    ACCOUNTS[slot].get_or_init(|| create_account(login))
}

fn create_account(login: Login) -> Account {
    require_root(&format!("the test account {}", login.name()));
    require_tool(login.shell(), login.package());
    // Dropbear (getusershell) refuses logins whose shell /etc/shells does not list; the
    // fish and tcsh packages add theirs.
    let shells = fs::read_to_string("/etc/shells").unwrap_or_default();
    assert!(
        shells.lines().any(|line| line.trim() == login.shell()),
        "{} is not in /etc/shells (reinstall {})",
        login.shell(),
        login.package()
    );
    let name = login.name();
    let home = homes_dir().join(name);
    let home_s = p(&home);
    // `-p '*'`: sshd (UsePAM no) and Dropbear refuse even key logins to an account whose
    // password field starts with '!', which is what useradd writes by default.
    let created = retry_on_lock(|| {
        run(Command::new("useradd").args([
            "--system",
            "--no-create-home",
            "--home-dir",
            &home_s,
            "--shell",
            login.shell(),
            "-p",
            "*",
            name,
        ]))
    });
    if created.code != 0 {
        assert!(
            created.stderr.contains("already exists"),
            "useradd {name} failed\n{}",
            created.describe()
        );
        // Made by an earlier run (or a parallel process): make sure it is still as we need it.
        let passwd = run(Command::new("getent").args(["passwd", name]));
        let shadow = run(Command::new("getent").args(["shadow", name]));
        let fields: Vec<&str> = passwd.stdout.trim_end().split(':').collect();
        let password = shadow.stdout.split(':').nth(1).unwrap_or("!");
        if fields.get(5) != Some(&home_s.as_str())
            || fields.get(6) != Some(&login.shell())
            || password != "*"
        {
            let out = retry_on_lock(|| {
                run(Command::new("usermod").args([
                    "--home",
                    &home_s,
                    "--shell",
                    login.shell(),
                    "-p",
                    "*",
                    name,
                ]))
            });
            assert_eq!(out.code, 0, "usermod {name} failed\n{}", out.describe());
        }
    }
    let (uid, gid) = user_ids(name).unwrap_or_else(|| panic!("{name} missing after useradd"));
    let account = Account {
        name,
        uid,
        gid,
        home,
    };

    // The home: the account's own, 0755 (Dropbear refuses keys under a home others can write).
    match fs::create_dir(&account.home) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => panic!("mkdir {home_s}: {e}"),
    }
    let meta = fs::symlink_metadata(&account.home).expect("stat home");
    assert!(meta.is_dir(), "{home_s} is not a directory");
    account.give(&account.home);
    set_mode(&account.home, 0o755);
    let bashrc = account.home.join(".bashrc");
    if login == Login::Banner {
        // bash reads ~/.bashrc for the commands of an ssh session (Debian's bash is built
        // with SSH_SOURCE_BASHRC). Replaced whole: a parallel process may be logging in.
        let tmp = account
            .home
            .join(format!(".bashrc.peerstage-tmp-{}", std::process::id()));
        write_file(&tmp, format!("printf '{}'\n", BANNER.replace('\n', "\\n")));
        account.give(&tmp);
        fs::rename(&tmp, &bashrc).expect("install .bashrc");
    } else {
        match fs::remove_file(&bashrc) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => panic!("rm {}: {e}", bashrc.display()),
        }
    }
    account
}

/// [`HOMES`], made once: root's, 0755, a real dir (not something another user planted).
fn homes_dir() -> PathBuf {
    let dir = PathBuf::from(HOMES);
    match fs::create_dir(&dir) {
        Ok(()) => set_mode(&dir, 0o755),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => panic!("mkdir {HOMES}: {e}"),
    }
    let meta = fs::symlink_metadata(&dir).expect("stat the homes dir");
    assert!(
        meta.is_dir() && meta.uid() == 0 && meta.mode() & 0o022 == 0,
        "{HOMES} must be a directory of root's that only root can write (remove it if in doubt)"
    );
    dir
}

/// The `Match` block that makes the [`Login::SftpOnly`] account sftp-only on an OpenSSH
/// server (root, the readiness probe's user, keeps its shell).
pub fn sftp_only_config() -> String {
    format!(
        "Match User {}\n  ForceCommand internal-sftp\n",
        Login::SftpOnly.name()
    )
}

// ---------------------------------------------------------------------------------------------
// Servers

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    OpenSsh,
    Dropbear,
}

/// A running ssh server of the test on 127.0.0.1.
pub struct Server {
    pub flavor: Flavor,
    pub dir: TempDir,
    pub port: u16,
    /// Client config: every host name goes to 127.0.0.1:port, with the client key.
    pub ssh_config: PathBuf,
    pub client_key: PathBuf,
    /// Whether the server has an SFTP server for the sftp subsystem.
    pub has_sftp: bool,
    /// The account the readiness probe logged in as (None: root).
    probe_user: Option<&'static str>,
    log_file: PathBuf,
    child: Child,
    /// The authorized_keys line this server added to accounts' homes (Dropbear).
    key_line: String,
    authorized: Vec<&'static Account>,
}

impl Server {
    /// OpenSSH's sshd with `sftp` as the command of its sftp subsystem (None: no subsystem
    /// at all, as a server built or configured without SFTP) and `extra` appended to its
    /// config (a `Match` block, say).
    pub fn openssh(sftp: Option<&str>, extra: &str) -> Server {
        require_root("an OpenSSH server of the test");
        for (tool, package) in [
            (SSHD, "openssh-server"),
            (SSH, "openssh-client"),
            (SCP, "openssh-client"),
            (SSH_KEYGEN, "openssh-client"),
        ] {
            require_tool(tool, package);
        }
        // sshd refuses to start as root without its privilege separation directory.
        match fs::create_dir("/run/sshd") {
            Ok(()) => set_mode(Path::new("/run/sshd"), 0o755),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => panic!("mkdir /run/sshd: {e}"),
        }
        let mut dir = server_dir("peerstage-sshd-");
        let d = dir.path().to_path_buf();
        let host_key = d.join("host_ed25519_key");
        let client_key = d.join("client_ed25519_key");
        keygen(&host_key);
        keygen(&client_key);
        let authorized_keys = d.join("authorized_keys");
        fs::copy(client_key.with_extension("pub"), &authorized_keys).expect("authorized_keys");
        let subsystem = sftp
            .map(|command| format!("Subsystem sftp {command}\n"))
            .unwrap_or_default();
        let log_file = d.join("sshd.log");
        let sshd_config = d.join("sshd_config");
        let ssh_config = d.join("ssh_config");
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            write_file(
                &sshd_config,
                format!(
                    "ListenAddress 127.0.0.1\n\
                     Port {port}\n\
                     HostKey {host_key}\n\
                     AuthorizedKeysFile {authorized_keys}\n\
                     StrictModes no\n\
                     UsePAM no\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     {subsystem}\
                     LogLevel VERBOSE\n\
                     PidFile {pid}\n\
                     PermitRootLogin prohibit-password\n\
                     UseDNS no\n\
                     PrintMotd no\n\
                     PrintLastLog no\n\
                     {extra}\n",
                    host_key = p(&host_key),
                    authorized_keys = p(&authorized_keys),
                    pid = p(&d.join("sshd.pid")),
                ),
            );
            write_client_config(&ssh_config, port, &client_key, &[]);
            let _ = fs::remove_file(&log_file);
            let child = Command::new(SSHD)
                .arg("-D")
                .arg("-E")
                .arg(&log_file)
                .arg("-f")
                .arg(&sshd_config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {SSHD}: {e}"));
            let mut server = Server {
                flavor: Flavor::OpenSsh,
                dir,
                port,
                ssh_config: ssh_config.clone(),
                client_key: client_key.clone(),
                has_sftp: sftp.is_some(),
                probe_user: None,
                log_file: log_file.clone(),
                child,
                key_line: String::new(),
                authorized: Vec::new(),
            };
            match server.wait_ready(&["Bind to port", "Cannot bind any address"]) {
                Ok(()) => return server,
                Err(log) => {
                    last_log = log;
                    // Take the dir back for the next attempt; the child is stopped by Drop.
                    dir = std::mem::replace(&mut server.dir, server_dir("peerstage-unused-"));
                }
            }
        }
        panic!("sshd could not bind a free loopback port after 5 attempts; last log:\n{last_log}");
    }

    /// Dropbear as it is packaged: its sftp subsystem runs [`SFTP_SERVER`]; with
    /// `sftp_server` false that path is `/dev/null` in the server's own mount namespace,
    /// so it has no SFTP server (the machine's file is not changed). Each of `logins` may
    /// log in with the client key (root never can: `-w`).
    pub fn dropbear(sftp_server: bool, logins: &[Login]) -> Server {
        require_root("a Dropbear server of the test");
        require_tool(DROPBEAR, "dropbear-bin");
        require_tool(DROPBEARKEY, "dropbear-bin");
        require_tool(SSH, "openssh-client");
        require_tool(SSH_KEYGEN, "openssh-client");
        require_tool(SFTP_SERVER, "openssh-sftp-server");
        assert!(!logins.is_empty(), "a Dropbear server needs an account");
        let accounts: Vec<&'static Account> = logins.iter().map(|&l| account(l)).collect();

        let mut dir = server_dir("peerstage-dropbear-");
        let d = dir.path().to_path_buf();
        let host_key = d.join("dropbear_ed25519_host_key");
        let out = run(Command::new(DROPBEARKEY)
            .args(["-t", "ed25519", "-f"])
            .arg(&host_key));
        assert_eq!(out.code, 0, "dropbearkey failed\n{}", out.describe());
        let client_key = d.join("client_ed25519_key");
        keygen(&client_key);
        // The comment names this server's dir: a line whose dir is gone is a dead server's.
        let public = fs::read_to_string(client_key.with_extension("pub")).expect("public key");
        let mut words = public.split_whitespace();
        let key_line = format!(
            "{} {} {KEY_COMMENT}{}",
            words.next().expect("key type"),
            words.next().expect("key"),
            p(&d)
        );
        for account in &accounts {
            edit_authorized_keys(account, |lines| lines.push(key_line.clone()));
        }

        let log_file = d.join("dropbear.log");
        let ssh_config = d.join("ssh_config");
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            write_client_config(&ssh_config, port, &client_key, &[]);
            let listen = format!("127.0.0.1:{port}");
            let pid_file = d.join("dropbear.pid");
            // -F foreground, -E log to stderr, -s no passwords, -w no root, -m no motd;
            // the pid file in the temp dir, not /var/run's.
            let dropbear_args: Vec<String> = vec![
                "-F".into(),
                "-E".into(),
                "-s".into(),
                "-w".into(),
                "-m".into(),
                "-p".into(),
                listen,
                "-r".into(),
                p(&host_key),
                "-P".into(),
                p(&pid_file),
            ];
            let mut cmd = if sftp_server {
                let mut cmd = Command::new(DROPBEAR);
                cmd.args(&dropbear_args);
                cmd
            } else {
                // unshare(1) makes the new mount namespace private, so the bind mount is seen
                // by this dropbear and its sessions only; it goes away with them.
                let mut cmd = Command::new("unshare");
                cmd.args([
                    "-m",
                    "sh",
                    "-c",
                    "mount --bind /dev/null \"$0\" && exec \"$@\"",
                ])
                .arg(SFTP_SERVER)
                .arg(DROPBEAR)
                .args(&dropbear_args);
                cmd
            };
            let log = fs::File::create(&log_file).expect("dropbear log");
            let child = cmd
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {DROPBEAR}: {e}"));
            let mut server = Server {
                flavor: Flavor::Dropbear,
                dir,
                port,
                ssh_config: ssh_config.clone(),
                client_key: client_key.clone(),
                has_sftp: sftp_server,
                probe_user: Some(accounts[0].name),
                log_file: log_file.clone(),
                child,
                key_line: key_line.clone(),
                authorized: accounts.clone(),
            };
            match server.wait_ready(&["Address already in use", "No listening ports"]) {
                Ok(()) => {
                    assert_sftp_server_untouched();
                    return server;
                }
                Err(log) => {
                    last_log = log;
                    // The next attempt owns the keys again; this one must not remove them.
                    server.authorized.clear();
                    dir = std::mem::replace(&mut server.dir, server_dir("peerstage-unused-"));
                }
            }
        }
        panic!(
            "dropbear could not bind a free loopback port after 5 attempts; last log:\n{last_log}"
        );
    }

    /// Waits until a plain `ssh … true` logs in. Err(log) when the server could not bind its
    /// port (`bind_errors` in its log), which the caller retries on another.
    fn wait_ready(&mut self, bind_errors: &[&str]) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut last_probe = None;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the server") {
                let log = self.log();
                if bind_errors.iter().any(|e| log.contains(e)) {
                    return Err(log);
                }
                panic!("{:?} exited at start ({status}); log:\n{log}", self.flavor);
            }
            if Instant::now() > deadline {
                panic!(
                    "{:?} on port {} not usable within {READY_TIMEOUT:?}\n\
                     last ssh probe: {}\nserver log:\n{}",
                    self.flavor,
                    self.port,
                    last_probe.as_ref().map(Out::describe).unwrap_or_default(),
                    self.log()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                let probe = self.ssh(self.probe_user, "true");
                if probe.code == 0 {
                    return Ok(());
                }
                last_probe = Some(probe);
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// A host name of this server (the client config sends every name here); a peer name no
    /// other test running at the same time uses, since ports are unique.
    pub fn host(&self) -> String {
        format!("peer-{}", self.port)
    }

    /// The client config as an option value.
    pub fn config(&self) -> String {
        p(&self.ssh_config)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// `ssh -F CONFIG [-l USER] HOST COMMAND`, the way an admin checks a login by hand.
    pub fn ssh(&self, user: Option<&str>, command: &str) -> Out {
        let mut cmd = Command::new(SSH);
        cmd.arg("-F").arg(&self.ssh_config);
        if let Some(user) = user {
            cmd.args(["-l", user]);
        }
        run(cmd.arg(self.host()).arg(command).stdin(Stdio::null()))
    }

    /// `scp -F CONFIG EXTRA... FROM TO` (remote paths as `[user@]host:path`).
    pub fn scp(&self, extra: &[&str], from: &str, to: &str) -> Out {
        run(Command::new(SCP)
            .arg("-F")
            .arg(&self.ssh_config)
            .args(["-B", "-q"])
            .args(extra)
            .args([from, to])
            .stdin(Stdio::null()))
    }

    /// `[user@]host:path` for scp.
    pub fn remote(&self, user: Option<&str>, path: &Path) -> String {
        match user {
            Some(user) => format!("{user}@{}:{}", self.host(), p(path)),
            None => format!("{}:{}", self.host(), p(path)),
        }
    }

    /// The usual `--rcp-command` for this server (OpenSSH scp with no protocol flag).
    pub fn rcp_command(&self) -> String {
        format!("{SCP} -F {} -B -q -C", self.config())
    }

    /// The usual `--rsh-command` for this server.
    pub fn rsh_command(&self) -> String {
        format!("{SSH} -F {}", self.config())
    }

    /// Writes another client config for this server, without the settings named in `drop`
    /// (`Port`, `IdentityFile`), so that a command reaches the server only with options of
    /// its own. Returns its path.
    pub fn config_without(&self, drop: &[&str]) -> PathBuf {
        let path = self
            .dir
            .path()
            .join(format!("ssh_config-without-{}", drop.join("-")));
        write_client_config(&path, self.port, &self.client_key, drop);
        path
    }

    /// A collect dir `name` under the server's dir holding the sample files and the collect
    /// indicator, given to `owner` (the login account) when there is one.
    pub fn collect_dir(&self, name: &str, owner: Option<&Account>) -> PathBuf {
        let dir = mkdir(&self.dir.path().join(name));
        write_samples(&dir);
        write_file(&dir.join("cback.collect"), "");
        if let Some(owner) = owner {
            owner.give(&dir);
            for entry in fs::read_dir(&dir).expect("read collect dir") {
                owner.give(&entry.expect("entry").path());
            }
        }
        dir
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only the listener is ours to stop; per-connection children exit with their clients.
        let _ = self.child.kill();
        let _ = self.child.wait();
        for account in &self.authorized {
            let line = &self.key_line;
            edit_authorized_keys(account, |lines| lines.retain(|l| l != line));
        }
    }
}

fn server_dir(prefix: &str) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create server temp dir");
    // The test accounts read collect dirs in here.
    set_mode(dir.path(), 0o755);
    dir
}

/// A client config sending every host name to 127.0.0.1:port, without the settings in
/// `drop`. HostName pins every name a test might use to loopback.
fn write_client_config(path: &Path, port: u16, client_key: &Path, drop: &[&str]) {
    let settings = [
        ("HostName", "127.0.0.1".to_string()),
        ("Port", port.to_string()),
        ("IdentityFile", p(client_key)),
        ("IdentitiesOnly", "yes".into()),
        ("StrictHostKeyChecking", "no".into()),
        ("UserKnownHostsFile", "/dev/null".into()),
        ("LogLevel", "ERROR".into()),
        ("BatchMode", "yes".into()),
        ("ConnectTimeout", "5".into()),
    ];
    let mut text = String::from("Host *\n");
    for (key, value) in settings {
        if !drop.contains(&key) {
            text += &format!("  {key} {value}\n");
        }
    }
    write_file(path, text);
}

/// Comment of the keys the test's Dropbear servers authorize, before the server's dir.
const KEY_COMMENT: &str = "peerstage-test-dropbear:";

/// Changes `account`'s `~/.ssh/authorized_keys` under a lock (servers in parallel test
/// processes share the accounts), dropping the keys of servers whose dir is gone (killed
/// runs), and puts the result in place whole: Dropbear reading it meanwhile sees the old
/// file or the new one.
fn edit_authorized_keys(account: &Account, edit: impl FnOnce(&mut Vec<String>)) {
    let ssh_dir = account.home.join(".ssh");
    match fs::create_dir(&ssh_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => panic!("mkdir {}: {e}", ssh_dir.display()),
    }
    let meta = fs::symlink_metadata(&ssh_dir).expect("stat .ssh");
    assert!(meta.is_dir(), "{} is not a directory", ssh_dir.display());
    account.give(&ssh_dir);
    set_mode(&ssh_dir, 0o700);

    let lock_file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(ssh_dir.join("authorized_keys.lock"))
        .expect("open the authorized_keys lock");
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("lock authorized_keys of {}: {e}", account.name));

    let keys = ssh_dir.join("authorized_keys");
    let text = match fs::read_to_string(&keys) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => String::new(),
        Err(e) => panic!("read {}: {e}", keys.display()),
    };
    let mut lines: Vec<String> = text
        .lines()
        .filter(|line| match line.split_once(KEY_COMMENT) {
            Some((_, dir)) => Path::new(dir).is_dir(),
            None => !line.trim().is_empty(),
        })
        .map(str::to_string)
        .collect();
    edit(&mut lines);
    let tmp = ssh_dir.join(format!("authorized_keys.tmp-{}", std::process::id()));
    let mut body = lines.join("\n");
    body.push('\n');
    write_file(&tmp, body);
    account.give(&tmp);
    set_mode(&tmp, 0o600);
    fs::rename(&tmp, &keys).expect("install authorized_keys");
}

/// The bind mount of a server without sftp-server stays in its own namespace.
#[track_caller]
fn assert_sftp_server_untouched() {
    let meta = fs::metadata(SFTP_SERVER).expect("stat the sftp server");
    assert!(
        meta.is_file() && meta.mode() & 0o111 != 0,
        "{SFTP_SERVER} is not an executable file any more outside the test's mount namespace"
    );
}
