//! A compromised peer, for the attacker's-eye tests in `tests/hostile.rs` (and a slow one for
//! `tests/progress.rs`): an SFTP v3 server
//! (run by the test sshd as its sftp subsystem) and a legacy scp source (run as its
//! ForceCommand), both serving the real files of the test's temp dirs, with one twist each,
//! chosen by a scenario name.
//!
//! The server is this very test binary: a constructor that runs before the test harness's
//! main (an `.init_array` entry, as the `ctor` crate makes) takes over when
//! `PEERSTAGE_TEST_HOSTILE` is set, serves stdin/stdout and exits, so nothing of the
//! harness ever writes into the channel.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

pub const SCENARIO_VAR: &str = "PEERSTAGE_TEST_HOSTILE";

#[used]
#[link_section = ".init_array"]
static HOSTILE_PEER: extern "C" fn() = hostile_peer_main;

extern "C" fn hostile_peer_main() {
    let Ok(scenario) = std::env::var(SCENARIO_VAR) else {
        return;
    };
    let code = if scenario.starts_with("scp-") {
        legacy_scp(&scenario)
    } else {
        sftp_server(&scenario)
    };
    std::process::exit(code);
}

/// A script that runs this binary as the hostile peer of `scenario` (for sshd's Subsystem or
/// ForceCommand lines, which take a plain path best).
pub fn wrapper(dir: &Path, scenario: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let script = dir.join(format!("hostile-{scenario}"));
    fs::write(
        &script,
        format!(
            "#!/bin/sh\n{SCENARIO_VAR}={scenario} exec '{}' \"$@\"\n",
            exe.display().to_string().replace('\'', r"'\''")
        ),
    )
    .expect("write hostile wrapper");
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod hostile wrapper");
    script
}

// ---------------------------------------------------------------------------------------------
// Legacy scp

/// Stands in for the peer's `scp -f DIR/*` (the source side of a legacy download); any other
/// command (the probe, the upload of the stage indicator) runs as it would.
fn legacy_scp(scenario: &str) -> i32 {
    let command = std::env::var("SSH_ORIGINAL_COMMAND").unwrap_or_default();
    let download_of_all =
        command.starts_with("scp ") && command.contains(" -f") && command.ends_with("/*");
    if !download_of_all {
        use std::os::unix::process::CommandExt;
        let err = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&command)
            .exec();
        eprintln!("cannot run {command}: {err}");
        return 1;
    }
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let mut ack = [0u8; 1];
    // The sink says it is ready.
    if stdin.read_exact(&mut ack).is_err() {
        return 1;
    }
    let mut send = |record: &[u8]| -> bool {
        stdout.write_all(record).is_ok()
            && stdout.flush().is_ok()
            && stdin.read_exact(&mut ack).is_ok()
            && ack[0] == 0
    };
    match scenario {
        // A set-uid root shell, as `scp -p` would keep it.
        "scp-setuid" => {
            let _ = send(b"T1700000000 0 1700000000 0\n")
                && send(b"C4755 5 suid\n")
                && send(b"hello\0");
            0
        }
        // Starts a big file and then sends nothing, while the connection stays up.
        "scp-stall" => {
            let _ = stdout.write_all(b"C0644 1000000 big\n");
            let _ = stdout.flush();
            let _ = stdin.read_exact(&mut ack);
            let _ = stdout.write_all(&[b'x'; 10]);
            let _ = stdout.flush();
            std::thread::sleep(std::time::Duration::from_secs(120));
            0
        }
        // Names scp must refuse, then a good file.
        "scp-names" => {
            let _ = send(b"C0644 5 ../escaped\n") && send(b"evil\n\0");
            let _ = send(b"C0644 5 good\n") && send(b"good\n\0");
            0
        }
        // An error line that would forge a log line and drive the terminal.
        "scp-forged-stderr" => {
            let _ = stdout.write_all(b"\x01scp: x\x1b]0;owned\x07\x1b[2J\n");
            let _ = stdout.flush();
            eprintln!("scp: bad\npeerstage: info: peer evil: staged 9 files\x1b[31m");
            1
        }
        _ => {
            eprintln!("unknown scenario {scenario}");
            1
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SFTP

const INIT: u8 = 1;
const VERSION: u8 = 2;
const OPEN: u8 = 3;
const CLOSE: u8 = 4;
const READ: u8 = 5;
const WRITE: u8 = 6;
const LSTAT: u8 = 7;
const FSTAT: u8 = 8;
const OPENDIR: u8 = 11;
const READDIR: u8 = 12;
const REALPATH: u8 = 16;
const STAT: u8 = 17;
const STATUS: u8 = 101;
const HANDLE: u8 = 102;
const DATA: u8 = 103;
const NAME: u8 = 104;
const ATTRS: u8 = 105;

const FX_OK: u32 = 0;
const FX_EOF: u32 = 1;
const FX_NO_SUCH_FILE: u32 = 2;
const FX_FAILURE: u32 = 4;
const FX_OP_UNSUPPORTED: u32 = 8;

enum Handle {
    File(fs::File),
    Dir(Vec<(Vec<u8>, fs::Metadata)>, bool),
}

struct Server {
    scenario: String,
    out: std::io::StdoutLock<'static>,
    handles: HashMap<u32, Handle>,
    next_handle: u32,
    /// READDIR rounds served, for the endless listing.
    rounds: u64,
    /// A real file that stands in for the names the endless listing makes up.
    stand_in: Option<PathBuf>,
}

fn sftp_server(scenario: &str) -> i32 {
    let mut input = std::io::stdin().lock();
    let mut server = Server {
        scenario: scenario.to_string(),
        out: std::io::stdout().lock(),
        handles: HashMap::new(),
        next_handle: 0,
        rounds: 0,
        stand_in: None,
    };
    loop {
        let mut length = [0u8; 4];
        if input.read_exact(&mut length).is_err() {
            return 0;
        }
        let mut packet = vec![0u8; u32::from_be_bytes(length) as usize];
        if input.read_exact(&mut packet).is_err() {
            return 0;
        }
        let kind = packet[0];
        let mut body = Fields(&packet[1..]);
        if kind == INIT {
            server.send(VERSION, &3u32.to_be_bytes());
            continue;
        }
        let id = body.u32();
        server.request(kind, id, body);
    }
}

struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, count: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(count.min(self.0.len()));
        self.0 = rest;
        head
    }
    fn u32(&mut self) -> u32 {
        let bytes = self.take(4);
        bytes
            .iter()
            .fold(0, |value, &byte| (value << 8) | u32::from(byte))
    }
    fn u64(&mut self) -> u64 {
        (u64::from(self.u32()) << 32) | u64::from(self.u32())
    }
    fn bytes(&mut self) -> &'a [u8] {
        let length = self.u32() as usize;
        self.take(length)
    }
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

fn put_attrs(out: &mut Vec<u8>, meta: &fs::Metadata, size: u64) {
    put_u32(out, 0x01 | 0x02 | 0x04 | 0x08);
    out.extend_from_slice(&size.to_be_bytes());
    put_u32(out, meta.uid());
    put_u32(out, meta.gid());
    put_u32(out, meta.mode());
    put_u32(out, meta.atime() as u32);
    put_u32(out, meta.mtime() as u32);
}

impl Server {
    fn send(&mut self, kind: u8, body: &[u8]) {
        let mut packet = Vec::with_capacity(body.len() + 5);
        put_u32(&mut packet, body.len() as u32 + 1);
        packet.push(kind);
        packet.extend_from_slice(body);
        let _ = self.out.write_all(&packet);
        if self.scenario == "duplicate-answers" && kind != VERSION {
            let _ = self.out.write_all(&packet);
        }
        let _ = self.out.flush();
    }

    fn answer(&mut self, kind: u8, id: u32, rest: &[u8]) {
        let mut body = id.to_be_bytes().to_vec();
        body.extend_from_slice(rest);
        self.send(kind, &body);
    }

    fn status(&mut self, id: u32, code: u32, message: &str) {
        let mut body = Vec::new();
        put_u32(&mut body, code);
        put_bytes(&mut body, message.as_bytes());
        put_bytes(&mut body, b"");
        self.answer(STATUS, id, &body);
    }

    fn io_status(&mut self, id: u32, err: &std::io::Error) {
        let code = if err.kind() == std::io::ErrorKind::NotFound {
            FX_NO_SUCH_FILE
        } else {
            FX_FAILURE
        };
        self.status(id, code, &err.to_string());
    }

    fn handle(&mut self, id: u32, handle: Handle) {
        self.next_handle += 1;
        self.handles.insert(self.next_handle, handle);
        let mut body = Vec::new();
        put_bytes(&mut body, &self.next_handle.to_be_bytes());
        self.answer(HANDLE, id, &body);
    }

    fn handle_of(fields: &mut Fields) -> u32 {
        let bytes = fields.bytes();
        bytes
            .iter()
            .fold(0, |value, &byte| (value << 8) | u32::from(byte))
    }

    /// The size a file is listed with: the truth, or the scenario's lie.
    fn listed_size(&self, meta: &fs::Metadata) -> u64 {
        match self.scenario.as_str() {
            "grow" => 5,
            "shrink" => meta.len() + 10,
            _ => meta.len(),
        }
    }

    fn request(&mut self, kind: u8, id: u32, mut fields: Fields) {
        match kind {
            OPEN => {
                let path = PathBuf::from(std::ffi::OsStr::from_bytes(fields.bytes()));
                let flags = fields.u32();
                if self.scenario == "forged-status" && !path.ends_with("cback.collect") {
                    return self.status(
                        id,
                        3,
                        "Permission denied\npeerstage: info: peer evil: staged 9 files\x1b]0;owned\x07\x1b[2J",
                    );
                }
                // The endless listing's names are all served by one real file.
                let path = match (&self.stand_in, path.exists()) {
                    (Some(stand_in), false) if self.scenario == "endless-readdir" => {
                        stand_in.clone()
                    }
                    _ => path,
                };
                let opened = if flags & 0x02 != 0 {
                    fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .open(&path)
                } else {
                    fs::File::open(&path)
                };
                match opened {
                    Ok(file) => self.handle(id, Handle::File(file)),
                    Err(err) => self.io_status(id, &err),
                }
            }
            CLOSE => {
                let handle = Self::handle_of(&mut fields);
                self.handles.remove(&handle);
                self.status(id, FX_OK, "");
            }
            READ => {
                let handle = Self::handle_of(&mut fields);
                let offset = fields.u64();
                let length = fields.u32() as usize;
                // Not hostile: a slow link, for the progress line (tests/progress.rs).
                if self.scenario == "slow-read" {
                    std::thread::sleep(std::time::Duration::from_millis(15));
                }
                match self.scenario.as_str() {
                    // Never answers a read; the connection stays up.
                    "stall-read" => return,
                    // Sends whatever is asked, without end.
                    "grow" => {
                        let mut body = Vec::new();
                        put_bytes(&mut body, &vec![b'g'; length]);
                        return self.answer(DATA, id, &body);
                    }
                    "wrong-id" => return self.status(id.wrapping_add(1000), FX_EOF, ""),
                    "huge-packet" => {
                        let _ = self.out.write_all(&[0xff, 0xff, 0xff, 0xff, DATA]);
                        let _ = self.out.flush();
                        return;
                    }
                    "truncated" => {
                        let _ = self.out.write_all(&[0, 0, 0, 100, DATA, 0, 0]);
                        let _ = self.out.flush();
                        std::process::exit(0);
                    }
                    _ => {}
                }
                let mut buf = vec![0u8; length];
                let read = match self.handles.get(&handle) {
                    Some(Handle::File(file)) => file.read_at(&mut buf, offset),
                    _ => return self.status(id, FX_FAILURE, "bad handle"),
                };
                match read {
                    Ok(0) => self.status(id, FX_EOF, ""),
                    Ok(count) => {
                        let mut body = Vec::new();
                        put_bytes(&mut body, &buf[..count]);
                        self.answer(DATA, id, &body);
                    }
                    Err(err) => self.io_status(id, &err),
                }
            }
            WRITE => self.status(id, FX_OK, ""),
            FSTAT => {
                let handle = Self::handle_of(&mut fields);
                let meta = match self.handles.get(&handle) {
                    Some(Handle::File(file)) => file.metadata(),
                    _ => return self.status(id, FX_FAILURE, "bad handle"),
                };
                match meta {
                    Ok(meta) => {
                        let mut body = Vec::new();
                        put_attrs(&mut body, &meta, self.listed_size(&meta));
                        self.answer(ATTRS, id, &body);
                    }
                    Err(err) => self.io_status(id, &err),
                }
            }
            STAT | LSTAT => {
                let path = PathBuf::from(std::ffi::OsStr::from_bytes(fields.bytes()));
                let meta = if kind == STAT {
                    fs::metadata(&path)
                } else {
                    fs::symlink_metadata(&path)
                };
                match meta {
                    Ok(meta) => {
                        let mut body = Vec::new();
                        put_attrs(&mut body, &meta, self.listed_size(&meta));
                        self.answer(ATTRS, id, &body);
                    }
                    Err(err) => self.io_status(id, &err),
                }
            }
            OPENDIR => {
                let path = PathBuf::from(std::ffi::OsStr::from_bytes(fields.bytes()));
                let entries: Vec<(Vec<u8>, fs::Metadata)> = match fs::read_dir(&path) {
                    Ok(entries) => entries
                        .flatten()
                        .filter_map(|entry| {
                            let meta = entry.metadata().ok()?;
                            Some((entry.file_name().into_vec(), meta))
                        })
                        .collect(),
                    Err(err) => return self.io_status(id, &err),
                };
                if let Some((name, _)) = entries.iter().find(|(_, meta)| meta.is_file()) {
                    self.stand_in = Some(path.join(std::ffi::OsStr::from_bytes(name)));
                }
                self.handle(id, Handle::Dir(entries, false));
            }
            READDIR => self.readdir(id, Self::handle_of(&mut fields)),
            REALPATH => {
                let path = fields.bytes().to_vec();
                let mut body = Vec::new();
                put_u32(&mut body, 1);
                put_bytes(&mut body, &path);
                put_bytes(&mut body, &path);
                put_u32(&mut body, 0);
                self.answer(NAME, id, &body);
            }
            _ => self.status(id, FX_OP_UNSUPPORTED, "unsupported"),
        }
    }

    fn readdir(&mut self, id: u32, handle: u32) {
        self.rounds += 1;
        let Some(Handle::Dir(entries, done)) = self.handles.get_mut(&handle) else {
            return self.status(id, FX_FAILURE, "bad handle");
        };
        let mut names: Vec<(Vec<u8>, fs::Metadata)> = Vec::new();
        match self.scenario.as_str() {
            // New names in every answer, never EOF.
            "endless-readdir" => {
                let Some((_, meta)) = entries.iter().find(|(_, meta)| meta.is_file()) else {
                    return self.status(id, FX_FAILURE, "empty");
                };
                let meta = meta.clone();
                for n in 0..100 {
                    names.push((format!("f{}-{n}", self.rounds).into_bytes(), meta.clone()));
                }
            }
            _ if *done => return self.status(id, FX_EOF, ""),
            "hostile-names" => {
                *done = true;
                let Some((_, meta)) = entries.iter().find(|(_, meta)| meta.is_file()) else {
                    return self.status(id, FX_FAILURE, "no file");
                };
                let meta = meta.clone();
                for name in [
                    &b"../escaped"[..],
                    b"a/b",
                    b"/abs",
                    b"",
                    b"nul\0byte",
                    b"new\nline",
                    b"ansi\x1b[2J\x1b]0;owned\x07",
                ] {
                    names.push((name.to_vec(), meta.clone()));
                }
            }
            _ => {
                *done = true;
                names = entries.clone();
            }
        }
        let listed: Vec<(Vec<u8>, fs::Metadata, u64)> = names
            .into_iter()
            .map(|(name, meta)| {
                let size = self.listed_size(&meta);
                (name, meta, size)
            })
            .collect();
        let mut body = Vec::new();
        put_u32(&mut body, listed.len() as u32);
        for (name, meta, size) in &listed {
            put_bytes(&mut body, name);
            put_bytes(&mut body, name);
            put_attrs(&mut body, meta, *size);
        }
        self.answer(NAME, id, &body);
    }
}
