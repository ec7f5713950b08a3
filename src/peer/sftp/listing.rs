//! Counting a listing as it comes: the entries against `max_entries` (a listing is held in
//! memory), the READDIR rounds too (a peer could answer with empty lists for ever), and
//! whether the server has said EOF.

use super::packet::{self, each_name, status, Answer, Attrs};
use super::{SftpError, READDIRS_IN_FLIGHT};

/// The READDIR side of a listing: counts entries and rounds against `max_entries`, and
/// tells when the server has said EOF.
pub struct Listing {
    max_entries: u64,
    entries: u64,
    rounds: u64,
    pub ended: bool,
}

impl Listing {
    pub fn new(max_entries: u64) -> Listing {
        Listing {
            max_entries,
            entries: 0,
            rounds: 0,
            ended: false,
        }
    }

    fn too_many(&self) -> SftpError {
        SftpError::Protocol(format!(
            "the peer lists more than {} entries (max_entries)",
            self.max_entries
        ))
    }

    /// One more READDIR is about to be sent.
    pub fn asked(&mut self) -> Answer<()> {
        self.rounds += 1;
        if self.rounds > self.max_entries.saturating_add(READDIRS_IN_FLIGHT as u64) {
            return Err(self.too_many());
        }
        Ok(())
    }

    /// A READDIR's answer: names for `each`, or EOF.
    pub fn answer(
        &mut self,
        kind: u8,
        body: &[u8],
        mut each: impl FnMut(&[u8], Attrs) -> Answer<()>,
    ) -> Answer<()> {
        match kind {
            packet::NAME if !self.ended => each_name(body, |name, attrs| {
                self.entries += 1;
                if self.entries > self.max_entries {
                    return Err(self.too_many());
                }
                each(name, attrs)
            }),
            packet::NAME => Err(SftpError::Protocol(
                "names after the end of a listing".into(),
            )),
            packet::STATUS => match status(body) {
                Err(SftpError::Status {
                    code: packet::FX_EOF,
                    ..
                }) => {
                    self.ended = true;
                    Ok(())
                }
                Err(err) => Err(err),
                Ok(()) => Err(packet::unexpected(kind)),
            },
            _ => Err(packet::unexpected(kind)),
        }
    }
}
