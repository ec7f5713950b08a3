//! Owners and permission modes for staged files, as given on the command line or in a config:
//! `UID:GID` or `USER[:GROUP]`, and octal modes such as `0640`.

use std::fmt;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;

use nix::unistd::{Gid, Group, Uid, User};

use crate::error::{io_cause, Error, Result};

/// A numeric owner and group, resolved once so that every file gets the same ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    pub uid: u32,
    pub gid: u32,
}

impl fmt::Display for Ownership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

impl Ownership {
    /// Parses `UID:GID`, `USER`, `USER:GROUP` (names or numbers on either side). A user given
    /// alone brings its primary group, as `chown USER:` does.
    pub fn parse(text: &str) -> Result<Ownership> {
        let (user, group) = match text.split_once(':') {
            Some((user, group)) => (user, Some(group)),
            None => (text, None),
        };
        if user.is_empty() {
            return Err(Error::usage(format!(
                "owner {text:?}: no user given (expected USER[:GROUP] or UID:GID)"
            )));
        }
        let (uid, primary_gid) = resolve_user(user, text)?;
        let gid = match group {
            None => primary_gid.ok_or_else(|| {
                Error::usage(format!("owner {text:?}: user {user} is numeric and has no account; give a group too (UID:GID)"))
            })?,
            Some("") => return Err(Error::usage(format!("owner {text:?}: empty group"))),
            Some(group) => resolve_group(group, text)?,
        };
        Ok(Ownership { uid, gid })
    }

    /// Owner and group from names or ids, as the config's backup user and group are given;
    /// a missing group means the user's primary group.
    pub fn from_names(user: &str, group: Option<&str>) -> Result<Ownership> {
        match group {
            Some(group) => Ownership::parse(&format!("{user}:{group}")),
            None => Ownership::parse(user),
        }
    }

    pub fn apply(&self, file: &File) -> std::io::Result<()> {
        nix::unistd::fchown(
            file,
            Some(Uid::from_raw(self.uid)),
            Some(Gid::from_raw(self.gid)),
        )
        .map_err(std::io::Error::from)
    }
}

fn resolve_user(user: &str, whole: &str) -> Result<(u32, Option<u32>)> {
    if let Ok(uid) = user.parse::<u32>() {
        let account = User::from_uid(Uid::from_raw(uid)).ok().flatten();
        return Ok((uid, account.map(|account| account.gid.as_raw())));
    }
    match User::from_name(user) {
        Ok(Some(account)) => Ok((account.uid.as_raw(), Some(account.gid.as_raw()))),
        Ok(None) => Err(Error::usage(format!(
            "owner {whole:?}: no such user: {user}"
        ))),
        Err(err) => Err(Error::usage(format!(
            "owner {whole:?}: cannot look up user {user}: {err}"
        ))),
    }
}

fn resolve_group(group: &str, whole: &str) -> Result<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    match Group::from_name(group) {
        Ok(Some(found)) => Ok(found.gid.as_raw()),
        Ok(None) => Err(Error::usage(format!(
            "owner {whole:?}: no such group: {group}"
        ))),
        Err(err) => Err(Error::usage(format!(
            "owner {whole:?}: cannot look up group {group}: {err}"
        ))),
    }
}

/// The set-uid, set-gid and sticky bits. No staged file ever carries them, whatever its
/// source had or the rcp command kept: a user who can write into a collect dir would
/// otherwise get a set-uid program owned by root (or the backup user) out of a stage.
pub const SET_ID_BITS: u32 = 0o7000;

/// A permission mode such as `0640`: octal digits only, at most `0777` (see `SET_ID_BITS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl Mode {
    pub fn parse(text: &str) -> Result<Mode> {
        let valid =
            !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| (b'0'..=b'7').contains(&b));
        let value = if valid {
            u32::from_str_radix(text, 8).ok()
        } else {
            None
        };
        match value {
            Some(mode) if mode & SET_ID_BITS != 0 && mode <= 0o7777 => Err(Error::usage(format!(
                "mode {text:?}: set-uid, set-gid and sticky bits are never given to staged files or indicators (use at most 0777)"
            ))),
            Some(mode) if mode <= 0o777 => Ok(Mode(mode)),
            _ => Err(Error::usage(format!(
                "mode {text:?}: expected an octal mode such as 0640"
            ))),
        }
    }

    pub fn apply(&self, file: &File) -> std::io::Result<()> {
        file.set_permissions(std::fs::Permissions::from_mode(self.0))
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// What to apply to every staged file or written indicator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Perms {
    pub owner: Option<Ownership>,
    pub mode: Option<Mode>,
}

impl Perms {
    /// Applies owner, then mode: chown may clear set-id bits (and some file systems keep
    /// them), so the mode comes last and is the one the file ends with. `fallback_mode` is
    /// used when no mode was asked for (a copied file keeps its source's, less `SET_ID_BITS`).
    pub fn apply(&self, file: &File, fallback_mode: Option<Mode>) -> Result<(), String> {
        if let Some(owner) = self.owner {
            owner
                .apply(file)
                .map_err(|err| format!("cannot chown to {owner}: {}", io_cause(&err)))?;
        }
        if let Some(mode) = self.mode.or(fallback_mode) {
            mode.apply(file)
                .map_err(|err| format!("cannot chmod to {mode}: {}", io_cause(&err)))?;
        }
        Ok(())
    }
}

pub fn running_as_root() -> bool {
    Uid::effective().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numeric_owners() {
        assert_eq!(
            Ownership::parse("1234:2345").unwrap(),
            Ownership {
                uid: 1234,
                gid: 2345
            }
        );
    }

    #[test]
    fn parses_names_and_primary_group() {
        assert_eq!(
            Ownership::parse("root").unwrap(),
            Ownership { uid: 0, gid: 0 }
        );
        assert_eq!(
            Ownership::parse("root:root").unwrap(),
            Ownership { uid: 0, gid: 0 }
        );
        assert_eq!(
            Ownership::parse("0:root").unwrap(),
            Ownership { uid: 0, gid: 0 }
        );
        assert_eq!(
            Ownership::from_names("root", None).unwrap(),
            Ownership { uid: 0, gid: 0 }
        );
    }

    #[test]
    fn rejects_unknown_and_malformed_owners() {
        for bad in [
            "",
            ":0",
            "0:",
            "no-such-user-xyz",
            "root:no-such-group-xyz",
            "4000000123",
        ] {
            let err = Ownership::parse(bad).unwrap_err();
            assert_eq!(err.kind, crate::error::ErrorKind::Usage, "{bad}");
        }
        assert!(Ownership::parse("no-such-user-xyz")
            .unwrap_err()
            .message()
            .contains("no such user"));
    }

    #[test]
    fn parses_octal_modes() {
        assert_eq!(Mode::parse("0640").unwrap(), Mode(0o640));
        assert_eq!(Mode::parse("640").unwrap(), Mode(0o640));
        assert_eq!(Mode::parse("0777").unwrap(), Mode(0o777));
        assert_eq!(Mode(0o640).to_string(), "0640");
        for set_id in ["04755", "2750", "1777", "07777"] {
            let err = Mode::parse(set_id).unwrap_err();
            assert!(
                err.message().contains("set-uid"),
                "{set_id}: {}",
                err.message()
            );
        }
        for bad in ["", "0999", "abc", "-640", "0o640", "177777", " 640"] {
            assert!(Mode::parse(bad).is_err(), "{bad}");
        }
    }
}
