//! SFTP version 3 packets (draft-ietf-secsh-filexfer-02, which every OpenSSH server
//! speaks): `uint32 length, byte type, payload`, every request carrying an id that its answer
//! repeats. Building requests and reading answers, nothing else: no I/O here.

use super::SftpError;

pub const INIT: u8 = 1;
pub const VERSION: u8 = 2;
pub const OPEN: u8 = 3;
pub const CLOSE: u8 = 4;
pub const READ: u8 = 5;
pub const OPENDIR: u8 = 11;
pub const READDIR: u8 = 12;
pub const STAT: u8 = 17;
pub const EXTENDED: u8 = 200;
pub const STATUS: u8 = 101;
pub const HANDLE: u8 = 102;
pub const DATA: u8 = 103;
pub const NAME: u8 = 104;
pub const ATTRS: u8 = 105;
pub const EXTENDED_REPLY: u8 = 201;

/// OpenSSH's extension that tells a server's limits, among them how many files a client may
/// keep open at once.
pub const LIMITS_EXTENSION: &[u8] = b"limits@openssh.com";

pub const FX_OK: u32 = 0;
pub const FX_EOF: u32 = 1;
pub const FX_NO_SUCH_FILE: u32 = 2;

pub const FXF_READ: u32 = 0x01;
pub const FXF_WRITE: u32 = 0x02;
pub const FXF_CREAT: u32 = 0x08;
pub const FXF_TRUNC: u32 = 0x10;

const ATTR_SIZE: u32 = 0x01;
const ATTR_UIDGID: u32 = 0x02;
const ATTR_PERMISSIONS: u32 = 0x04;
const ATTR_ACMODTIME: u32 = 0x08;
const ATTR_EXTENDED: u32 = 0x8000_0000;

/// Bigger answers than this are not something we asked for: OpenSSH's client and server
/// refuse packets over 256 KiB, and a READDIR answer of OpenSSH holds at most 100 names.
pub const MAX_PACKET: usize = 256 * 1024;

/// The longest file name a local file system takes (NAME_MAX): a longer name from a peer can
/// only be nonsense, and would cost memory in a listing.
pub const NAME_MAX: usize = 255;

pub type Answer<T> = std::result::Result<T, SftpError>;

/// What a file is, from the mode bits of its attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
    Unknown,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attrs {
    pub size: Option<u64>,
    pub permissions: Option<u32>,
    /// Access and modification times, in seconds since the epoch.
    pub times: Option<(u32, u32)>,
}

impl Attrs {
    pub fn kind(&self) -> Kind {
        match self.permissions.map(|mode| mode & 0o170000) {
            Some(0o100000) => Kind::File,
            Some(0o040000) => Kind::Dir,
            Some(0o120000) => Kind::Symlink,
            Some(_) => Kind::Other,
            None => Kind::Unknown,
        }
    }
}

/// Words for a failure status without a message of its own.
pub fn status_words(code: u32) -> &'static str {
    match code {
        FX_EOF => "end of file",
        FX_NO_SUCH_FILE => "No such file or directory",
        3 => "Permission denied",
        8 => "Operation unsupported",
        _ => "Failure",
    }
}

/// A STATUS answer: OK, or the failure it reports.
pub fn status(answer: &[u8]) -> Answer<()> {
    let mut status = Reader::new(answer);
    let code = status.u32()?;
    let message = status
        .bytes()
        .map(|text| String::from_utf8_lossy(text).into_owned())
        .unwrap_or_default();
    if code != FX_OK {
        return Err(SftpError::Status { code, message });
    }
    Ok(())
}

/// Calls `each` for every entry of a NAME answer: name, `ls -l` line (unused), attributes.
pub fn each_name(answer: &[u8], mut each: impl FnMut(&[u8], Attrs) -> Answer<()>) -> Answer<()> {
    let mut names = Reader::new(answer);
    for _ in 0..names.u32()? {
        let name = names.bytes()?;
        if name.len() > NAME_MAX {
            return Err(SftpError::Protocol(format!(
                "the peer lists a name of {} bytes (at most {NAME_MAX})",
                name.len()
            )));
        }
        names.bytes()?;
        let attrs = names.attrs()?;
        each(name, attrs)?;
    }
    Ok(())
}

/// An ATTRS answer's attributes.
pub fn attrs_answer(kind: u8, answer: &[u8]) -> Answer<Attrs> {
    match kind {
        ATTRS => Reader::new(answer).attrs(),
        _ => Err(unexpected(kind)),
    }
}

/// A HANDLE answer's handle.
pub fn handle_answer(kind: u8, answer: &[u8]) -> Answer<Vec<u8>> {
    match kind {
        HANDLE => Ok(Reader::new(answer).bytes()?.to_vec()),
        STATUS => status(answer).and(Err(unexpected(kind))),
        _ => Err(unexpected(kind)),
    }
}

pub fn unexpected(kind: u8) -> SftpError {
    SftpError::Protocol(format!("unexpected answer of type {kind}"))
}

pub fn put_u32(buf: &mut Vec<u8>, value: u32) {
    buf.extend_from_slice(&value.to_be_bytes());
}

pub fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(buf, u32::try_from(bytes.len()).unwrap_or(u32::MAX));
    buf.extend_from_slice(bytes);
}

/// A request body that is one string: a path or a handle.
pub fn bytes_body(bytes: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(bytes.len() + 4);
    put_bytes(&mut body, bytes);
    body
}

/// OPEN's body: path, flags, and the permissions of a file it creates.
pub fn open_body(path: &[u8], flags: u32, permissions: Option<u32>) -> Vec<u8> {
    let mut body = bytes_body(path);
    put_u32(&mut body, flags);
    match permissions {
        Some(mode) => {
            put_u32(&mut body, ATTR_PERMISSIONS);
            put_u32(&mut body, mode);
        }
        None => put_u32(&mut body, 0),
    }
    body
}

/// READ's body: handle, offset, length.
pub fn read_body(handle: &[u8], offset: u64, length: u32) -> Vec<u8> {
    let mut body = bytes_body(handle);
    body.extend_from_slice(&offset.to_be_bytes());
    put_u32(&mut body, length);
    body
}

/// `uint32 length, byte type, head, body` onto `out`.
pub fn push_packet(out: &mut Vec<u8>, kind: u8, head: &[u8], body: &[u8]) {
    let length = head.len() + body.len() + 1;
    put_u32(out, u32::try_from(length).unwrap_or(u32::MAX));
    out.push(kind);
    out.extend_from_slice(head);
    out.extend_from_slice(body);
}

/// The extension names a VERSION answer lists (its name and data pairs, after the version).
pub fn extensions(pairs: &[u8]) -> Answer<Vec<Vec<u8>>> {
    let mut reader = Reader::new(pairs);
    let mut names = Vec::new();
    while !reader.data.is_empty() && names.len() < 64 {
        names.push(reader.bytes()?.to_vec());
        reader.bytes()?;
    }
    Ok(names)
}

/// The open-handles field of a `limits@openssh.com` reply (0: no limit said).
pub fn open_handles_limit(kind: u8, reply: &[u8]) -> Answer<u64> {
    if kind != EXTENDED_REPLY {
        return Err(unexpected(kind));
    }
    let mut reader = Reader::new(reply);
    for _ in 0..3 {
        reader.u64()?;
    }
    reader.u64()
}

/// Reads the fields of an answer; running off its end is a protocol error.
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data }
    }

    fn take(&mut self, count: usize) -> Answer<&'a [u8]> {
        if self.data.len() < count {
            return Err(SftpError::Protocol("answer cut short".to_string()));
        }
        let (head, rest) = self.data.split_at(count);
        self.data = rest;
        Ok(head)
    }

    pub fn u32(&mut self) -> Answer<u32> {
        let bytes = self.take(4)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn u64(&mut self) -> Answer<u64> {
        Ok((u64::from(self.u32()?) << 32) | u64::from(self.u32()?))
    }

    pub fn bytes(&mut self) -> Answer<&'a [u8]> {
        let length = self.u32()? as usize;
        self.take(length)
    }

    #[cfg(test)]
    pub fn rest(&self) -> &'a [u8] {
        self.data
    }

    pub fn attrs(&mut self) -> Answer<Attrs> {
        let flags = self.u32()?;
        let mut attrs = Attrs::default();
        if flags & ATTR_SIZE != 0 {
            attrs.size = Some(self.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            self.take(8)?;
        }
        if flags & ATTR_PERMISSIONS != 0 {
            attrs.permissions = Some(self.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            attrs.times = Some((self.u32()?, self.u32()?));
        }
        if flags & ATTR_EXTENDED != 0 {
            for _ in 0..self.u32()? {
                self.bytes()?;
                self.bytes()?;
            }
        }
        Ok(attrs)
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub fn attrs_bytes(flags: u32, fields: &[u32]) -> Vec<u8> {
        let mut buf = Vec::new();
        put_u32(&mut buf, flags);
        for &field in fields {
            put_u32(&mut buf, field);
        }
        buf
    }

    /// A file's attributes as a server lists them: size, permissions.
    pub fn file_attrs(size: u32, mode: u32) -> Vec<u8> {
        attrs_bytes(ATTR_SIZE | ATTR_PERMISSIONS, &[0, size, mode])
    }

    #[test]
    fn reads_attributes_skipping_what_it_does_not_need() {
        // size (2 words), uid+gid, permissions, atime+mtime, one extension pair.
        let mut data = attrs_bytes(
            ATTR_SIZE | ATTR_UIDGID | ATTR_PERMISSIONS | ATTR_ACMODTIME | ATTR_EXTENDED,
            &[1, 2, 1000, 1000, 0o100644, 7, 8, 1],
        );
        put_bytes(&mut data, b"name@example.com");
        put_bytes(&mut data, b"value");
        data.extend_from_slice(b"after");
        let mut reader = Reader::new(&data);
        let attrs = reader.attrs().unwrap();
        assert_eq!(attrs.size, Some((1 << 32) | 2));
        assert_eq!(attrs.permissions, Some(0o100644));
        assert_eq!(attrs.times, Some((7, 8)));
        assert_eq!(attrs.kind(), Kind::File);
        assert_eq!(reader.rest(), b"after");
    }

    #[test]
    fn kinds_from_mode_bits() {
        let kind = |mode| {
            Attrs {
                permissions: Some(mode),
                ..Attrs::default()
            }
            .kind()
        };
        assert_eq!(kind(0o040755), Kind::Dir);
        assert_eq!(kind(0o120777), Kind::Symlink);
        assert_eq!(kind(0o010644), Kind::Other);
        assert_eq!(Attrs::default().kind(), Kind::Unknown);
    }

    #[test]
    fn a_cut_answer_is_a_protocol_error_not_a_panic() {
        let data = attrs_bytes(ATTR_SIZE, &[0]);
        assert!(matches!(
            Reader::new(&data).attrs(),
            Err(SftpError::Protocol(_))
        ));
        let mut name = Vec::new();
        put_u32(&mut name, 10);
        name.extend_from_slice(b"abc");
        assert!(matches!(
            Reader::new(&name).bytes(),
            Err(SftpError::Protocol(_))
        ));
    }

    #[test]
    fn a_name_longer_than_a_file_name_can_be_is_refused() {
        let mut answer = Vec::new();
        put_u32(&mut answer, 1);
        put_bytes(&mut answer, &[b'x'; NAME_MAX + 1]);
        put_bytes(&mut answer, b"");
        answer.extend(file_attrs(1, 0o100644));
        assert!(matches!(
            each_name(&answer, |_, _| Ok(())),
            Err(SftpError::Protocol(_))
        ));
    }

    #[test]
    fn requests_are_length_type_and_payload() {
        let mut out = Vec::new();
        push_packet(&mut out, READ, &7u32.to_be_bytes(), &read_body(b"h", 9, 32));
        assert_eq!(&out[..4], &(1 + 4 + 4 + 1 + 8 + 4u32).to_be_bytes());
        assert_eq!(out[4], READ);
        assert_eq!(&out[5..9], &7u32.to_be_bytes());
        assert_eq!(&out[9..13], &1u32.to_be_bytes());
        assert_eq!(out[13], b'h');
        assert_eq!(&out[14..22], &9u64.to_be_bytes());
        assert_eq!(&out[22..26], &32u32.to_be_bytes());
    }
}
