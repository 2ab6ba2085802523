//! Capture files: classic pcap (both byte orders, micro- and nanosecond) and pcapng.
//!
//! A plain file is read in chunks of [`CHUNK`] bytes into one buffer that the reader reuses: a
//! [`Frame`] borrows its bytes from that buffer until the next frame is asked for. The kernel
//! copies each chunk straight into memory the reader has just used (hot in the CPU's cache),
//! and apitap holds no more of the file than one chunk, however large the capture (the replay
//! of a file larger than free memory runs at full speed; `top` shows only what apitap holds).
//! gzip'd captures and stdin (`-`) are read into one owned buffer first. The header is
//! validated when the file is opened, so a wrong magic or a cut header is reported before any
//! packet is processed. A file cut in the middle of a record (a capture interrupted by a crash)
//! is read up to the cut and the walker reports where it stopped; a record whose length fields
//! are impossible stops the walk the same way, because nothing after it can be trusted to be
//! aligned. A file is read up to the length it had when it was opened.
//!
//! Why not `mmap`: mapping the file cost the capture thread a page fault per 16 pages and, to
//! keep a replay from holding the whole file resident, an `madvise` unmapping behind the
//! reader. On the 1.6 GB mixed benchmark capture that page-table work was ~20% of the capture
//! thread; walking it with `read` into a reused buffer took 0.24 s where the mapped walk with
//! its release took 0.30 s (same run). A file truncated while it is read is also just a short
//! read here, where a mapping ends the process with SIGBUS.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use super::{Frame, Ts};

/// Largest record we accept, whatever the header's snap length says (libpcap's own ceiling).
const MAX_RECORD: usize = 256 * 1024;

/// Largest pcapng block the reader buffers (a packet or interface block; other blocks are
/// skipped without being read): far above any packet a capture holds.
const MAX_BLOCK: usize = 16 << 20;

/// Bytes asked of the file per read: small enough that a chunk stays in the core's cache
/// while its packets are decoded, large enough that the system calls cost nothing (6.5 k
/// reads for the 1.6 GB benchmark capture).
const CHUNK: usize = 256 << 10;

/// Why a capture file could not be opened. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{path}: cannot read: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path}: empty file (0 bytes), not a capture")]
    Empty { path: String },
    #[error("{path}: not a pcap or pcapng file (magic {magic})")]
    BadMagic { path: String, magic: String },
    #[error("{path}: truncated file header ({len} bytes, need {need})")]
    ShortHeader { path: String, len: usize, need: usize },
    #[error("{path}: malformed header: {reason}")]
    Malformed { path: String, reason: &'static str },
    #[error("{path}: gzip: {source}")]
    Gzip { path: String, source: io::Error },
}

enum Buf {
    /// A plain file, read in chunks; its length when it was opened.
    File(File, u64),
    Owned(Vec<u8>),
}

/// An opened, header-checked capture file.
pub struct CaptureFile {
    pub name: String,
    buf: Buf,
    format: Format,
}

#[derive(Clone, Copy, Debug)]
enum Format {
    Pcap { be: bool, nano: bool, linktype: u32 },
    Pcapng,
}

impl CaptureFile {
    /// Open `path` (`-` is stdin), decompress gzip, and validate the file header.
    pub fn open(path: &str) -> Result<Self, OpenError> {
        let io_err = |source| OpenError::Io {
            path: path.to_string(),
            source,
        };
        let (buf, head) = if path == "-" {
            let mut v = Vec::new();
            io::stdin().lock().read_to_end(&mut v).map_err(io_err)?;
            (Buf::Owned(v), Vec::new())
        } else {
            let mut file = File::open(path).map_err(io_err)?;
            let meta = file.metadata().map_err(io_err)?;
            if !meta.is_file() {
                // a pipe or a device (`<(zcat f.pcap.gz)`, /dev/stdin): read like stdin
                let mut v = Vec::new();
                file.read_to_end(&mut v).map_err(io_err)?;
                if v.is_empty() {
                    return Err(OpenError::Empty { path: path.to_string() });
                }
                return Self::from_owned(path, v);
            }
            let len = meta.len();
            if len == 0 {
                return Err(OpenError::Empty { path: path.to_string() });
            }
            // (enough for either header and the gzip magic)
            let mut head = vec![0; len.min(64) as usize];
            read_full_at(&file, &mut head, 0).map_err(io_err)?;
            (Buf::File(file, len), head)
        };
        let buf = match buf {
            Buf::File(file, _) if is_gzip(&head) => {
                let mut out = Vec::new();
                flate2::read::MultiGzDecoder::new(io::BufReader::new(file))
                    .read_to_end(&mut out)
                    .map_err(|source| OpenError::Gzip {
                        path: path.to_string(),
                        source,
                    })?;
                Buf::Owned(out)
            }
            Buf::Owned(v) => return Self::from_owned(path, v),
            b => b,
        };
        let format = match &buf {
            Buf::File(..) => sniff(path, &head)?,
            Buf::Owned(v) => sniff(path, v)?,
        };
        Ok(CaptureFile {
            name: path.to_string(),
            buf,
            format,
        })
    }

    /// A capture read whole into memory (stdin, a pipe), gunzipped if it is gzip'd.
    fn from_owned(path: &str, v: Vec<u8>) -> Result<Self, OpenError> {
        let v = if is_gzip(&v) {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&v[..])
                .read_to_end(&mut out)
                .map_err(|source| OpenError::Gzip {
                    path: path.to_string(),
                    source,
                })?;
            out
        } else {
            v
        };
        Self::from_bytes(path, v)
    }

    /// Wrap bytes already in memory (tests, benches).
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Self, OpenError> {
        let format = sniff(name, &bytes)?;
        Ok(CaptureFile {
            name: name.to_string(),
            buf: Buf::Owned(bytes),
            format,
        })
    }

    /// Bytes of capture data (a gzip'd file's decompressed size).
    pub fn len(&self) -> usize {
        match &self.buf {
            Buf::File(_, len) => *len as usize,
            Buf::Owned(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A walker over this file's packet records.
    pub fn reader(&self) -> Reader<'_> {
        let (pos, kind) = match self.format {
            Format::Pcap { be, nano, linktype } => (24, Kind::Pcap { be, nano, linktype }),
            Format::Pcapng => (
                0,
                Kind::Pcapng {
                    be: false,
                    ifaces: Vec::new(),
                },
            ),
        };
        let src = match &self.buf {
            Buf::Owned(v) => Src::Mem(v),
            Buf::File(file, len) => Src::File(Chunks {
                file,
                len: *len,
                buf: Vec::new(),
                end: 0,
                base: 0,
            }),
        };
        let mut r = Reader {
            src,
            pos: 0,
            kind,
            stopped: None,
            prefetched: 0,
        };
        // (the file header, checked when the file was opened)
        r.skip(pos);
        r
    }
}

/// Fill `buf` from `off`, retrying short reads; fewer bytes only at the end of the file.
fn read_full_at(file: &File, buf: &mut [u8], off: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], off + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn is_gzip(b: &[u8]) -> bool {
    b.len() >= 2 && b[0] == 0x1f && b[1] == 0x8b
}

const PCAPNG_SHB: u32 = 0x0A0D_0D0A;
const PCAPNG_BOM: u32 = 0x1A2B_3C4D;

fn sniff(path: &str, b: &[u8]) -> Result<Format, OpenError> {
    let p = || path.to_string();
    if b.is_empty() {
        return Err(OpenError::Empty { path: p() });
    }
    if b.len() < 4 {
        return Err(OpenError::ShortHeader {
            path: p(),
            len: b.len(),
            need: 24,
        });
    }
    let magic_le = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let (be, nano) = match magic_le {
        0xA1B2_C3D4 => (false, false),
        0xA1B2_3C4D => (false, true),
        0xD4C3_B2A1 => (true, false),
        0x4D3C_B2A1 => (true, true),
        PCAPNG_SHB => {
            if b.len() < 12 {
                return Err(OpenError::ShortHeader {
                    path: p(),
                    len: b.len(),
                    need: 28,
                });
            }
            let bom = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
            if bom != PCAPNG_BOM && bom.swap_bytes() != PCAPNG_BOM {
                return Err(OpenError::Malformed {
                    path: p(),
                    reason: "pcapng byte-order magic",
                });
            }
            return Ok(Format::Pcapng);
        }
        _ => {
            return Err(OpenError::BadMagic {
                path: p(),
                magic: format!("{:02x}{:02x}{:02x}{:02x}", b[0], b[1], b[2], b[3]),
            });
        }
    };
    if b.len() < 24 {
        return Err(OpenError::ShortHeader {
            path: p(),
            len: b.len(),
            need: 24,
        });
    }
    let linktype = rd32(be, &b[20..24]) & 0x0FFF_FFFF;
    Ok(Format::Pcap { be, nano, linktype })
}

#[inline]
fn rd32(be: bool, b: &[u8]) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    if be {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

#[inline]
fn rd16(be: bool, b: &[u8]) -> u16 {
    let a = [b[0], b[1]];
    if be {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

/// Where and why a walk stopped before the end of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    pub offset: usize,
    pub reason: &'static str,
}

#[derive(Clone, Copy)]
struct Iface {
    linktype: u32,
    /// Timestamp units per second (10^6 unless if_tsresol says otherwise).
    units: u64,
}

enum Kind {
    Pcap { be: bool, nano: bool, linktype: u32 },
    Pcapng { be: bool, ifaces: Vec<Iface> },
}

/// Walks packet records, yielding frames that borrow from the reader (valid until the next
/// frame is asked for).
pub struct Reader<'a> {
    src: Src<'a>,
    /// Where the next record starts in the current window (see [`Reader::window`]).
    pos: usize,
    kind: Kind,
    stopped: Option<Stopped>,
    /// In memory: cache lines up to this offset have been prefetched (see [`PREFETCH_AHEAD`]).
    prefetched: usize,
}

/// Where the records come from.
enum Src<'a> {
    /// The whole capture in memory (stdin, gzip, tests): the window is all of it.
    Mem(&'a [u8]),
    /// A plain file read in chunks: the window is the buffered part.
    File(Chunks<'a>),
}

/// A file read chunk by chunk into one buffer: `buf[..end]` holds the file's bytes from
/// offset `base` on.
struct Chunks<'a> {
    file: &'a File,
    /// The file's length when it was opened: nothing past it is read.
    len: u64,
    buf: Vec<u8>,
    end: usize,
    base: u64,
}

/// The bytes a reader can walk without reading more.
#[inline(always)]
fn window<'s>(src: &'s Src<'_>) -> &'s [u8] {
    match src {
        Src::Mem(d) => d,
        Src::File(c) => &c.buf[..c.end],
    }
}

/// Bytes ahead of the reader whose cache lines are prefetched, when the capture is in
/// memory. The TCP checksum is the first to read a packet's bytes, and waited on memory for
/// them (the hardware prefetcher stops at every 4 KiB page): on the 1.6 GB mixed capture,
/// mapped, the checksum fell from ~15% to ~7% of the capture thread's samples (4 KiB ahead
/// did as well as 8 KiB; 2 KiB and 16 KiB worse). A file read in chunks needs none: the
/// kernel has just written each chunk through the cache.
const PREFETCH_AHEAD: usize = 4 << 10;

impl<'a> Reader<'a> {
    /// Byte offset of the next record in the capture data (progress reporting).
    pub fn offset(&self) -> usize {
        match &self.src {
            Src::Mem(_) => self.pos,
            Src::File(c) => c.base as usize + self.pos,
        }
    }

    /// Set when the walk ended early: the file is cut or a record is corrupt.
    pub fn stopped(&self) -> Option<Stopped> {
        self.stopped
    }

    /// Bytes of capture data in all.
    fn total(&self) -> usize {
        match &self.src {
            Src::Mem(d) => d.len(),
            Src::File(c) => c.len as usize,
        }
    }

    /// Are `need` bytes from the next record's start in the window, reading more of the file
    /// if they are not yet? False only at the end of the data (or an I/O error, which stops
    /// the walk).
    #[inline(always)]
    fn have(&mut self, need: usize) -> bool {
        window(&self.src).len() - self.pos >= need || self.refill(need)
    }

    /// Move the unread bytes to the front of the buffer and read the file after them, at
    /// least `need` bytes from the next record's start if the file has them. The buffer
    /// grows only for a record larger than a chunk (bounded by [`MAX_RECORD`] and
    /// [`MAX_BLOCK`] by the callers).
    #[cold]
    fn refill(&mut self, need: usize) -> bool {
        let Src::File(c) = &mut self.src else {
            return false;
        };
        if self.pos > 0 {
            c.buf.copy_within(self.pos..c.end, 0);
            c.end -= self.pos;
            c.base += self.pos as u64;
            self.pos = 0;
        }
        let size = need.max(CHUNK);
        if c.buf.len() < size {
            c.buf.resize(size, 0);
        }
        let at = c.base + c.end as u64;
        let room = (c.buf.len() - c.end).min(c.len.saturating_sub(at) as usize);
        match read_full_at(c.file, &mut c.buf[c.end..c.end + room], at) {
            Ok(n) => {
                c.end += n;
                c.end >= need
            }
            Err(_) => {
                self.stop("the file could not be read further (I/O error)");
                false
            }
        }
    }

    /// Pass over `n` bytes from the next record's start (a block nobody reads, or the file
    /// header), reading none of them that are not yet in the window.
    fn skip(&mut self, n: usize) {
        let len = window(&self.src).len();
        match &mut self.src {
            Src::File(c) if self.pos + n > len => {
                c.base += (self.pos + n) as u64;
                c.end = 0;
                self.pos = 0;
            }
            _ => self.pos = (self.pos + n).min(len),
        }
    }

    /// Prefetch the cache lines up to `PREFETCH_AHEAD` bytes past the reader, each line once
    /// (a hint only: frames and their bytes are the same with or without it).
    #[inline(always)]
    fn prefetch_ahead(&mut self) {
        #[cfg(target_arch = "x86_64")]
        if let Src::Mem(data) = self.src {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let to = (self.pos + PREFETCH_AHEAD).min(data.len());
            while self.prefetched < to {
                // SAFETY: `prefetched < to <= data.len()`: the address is inside `data`, and a
                // prefetch never faults nor changes memory.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(data.as_ptr().add(self.prefetched) as *const i8) };
                self.prefetched += 64;
            }
        }
    }

    fn stop<'s>(&mut self, reason: &'static str) -> Option<Frame<'s>> {
        if self.stopped.is_none() {
            self.stopped = Some(Stopped {
                offset: self.offset(),
                reason,
            });
        }
        None
    }

    /// The next frame, or `None` at the end (or at a cut; see [`Reader::stopped`]).
    #[inline]
    pub fn next_frame(&mut self) -> Option<Frame<'_>> {
        if self.stopped.is_some() {
            return None;
        }
        self.prefetch_ahead();
        match self.kind {
            Kind::Pcap { be, nano, linktype } => self.next_pcap(be, nano, linktype),
            Kind::Pcapng { .. } => self.next_pcapng(),
        }
    }

    #[inline]
    fn next_pcap(&mut self, be: bool, nano: bool, linktype: u32) -> Option<Frame<'_>> {
        if !self.have(16) {
            if self.stopped.is_some() || window(&self.src).len() == self.pos {
                return None;
            }
            return self.stop("file ends inside a record header");
        }
        let h = &window(&self.src)[self.pos..self.pos + 16];
        let sec = rd32(be, &h[0..4]) as u64;
        let frac = rd32(be, &h[4..8]) as u64;
        let incl = rd32(be, &h[8..12]) as usize;
        let orig = rd32(be, &h[12..16]);
        if incl > MAX_RECORD {
            return self.stop("record length beyond 256 KiB (corrupt record)");
        }
        if !self.have(16 + incl) {
            return self.stop("file ends inside a packet");
        }
        let at = self.pos + 16;
        self.pos = at + incl;
        let ts = sec * 1_000_000_000 + if nano { frac } else { frac * 1000 };
        Some(Frame {
            ts,
            linktype,
            data: &window(&self.src)[at..at + incl],
            orig_len: orig.max(incl as u32),
        })
    }

    fn next_pcapng(&mut self) -> Option<Frame<'_>> {
        loop {
            if !self.have(12) {
                if self.stopped.is_some() || window(&self.src).len() == self.pos {
                    return None;
                }
                return self.stop("file ends inside a block header");
            }
            let Kind::Pcapng { be, .. } = self.kind else {
                return None;
            };
            let rest = &window(&self.src)[self.pos..];
            let btype_le = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
            let be = if btype_le == PCAPNG_SHB {
                // A section header sets the byte order for everything until the next one.
                let bom = u32::from_le_bytes([rest[8], rest[9], rest[10], rest[11]]);
                let be = bom != PCAPNG_BOM;
                if let Kind::Pcapng { be: b, ifaces } = &mut self.kind {
                    *b = be;
                    ifaces.clear();
                }
                be
            } else {
                be
            };
            let btype = rd32(be, &rest[0..4]);
            let blen = rd32(be, &rest[4..8]) as usize;
            if blen < 12 || !blen.is_multiple_of(4) {
                return self.stop("corrupt pcapng block length");
            }
            if !matches!(btype, 1 | 2 | 3 | 6) {
                // SHB, statistics, name resolution, custom: nothing for us, and not read
                if self.offset() + blen > self.total() {
                    return self.stop("file ends inside a block");
                }
                self.skip(blen);
                continue;
            }
            if blen > MAX_BLOCK {
                return self.stop("pcapng block beyond 16 MiB (corrupt block)");
            }
            if !self.have(blen) {
                return self.stop("file ends inside a block");
            }
            let start = self.pos;
            self.pos += blen;
            // the block's body: after type and length, before the trailing length
            let (b0, b1) = (start + 8, start + blen - 4);
            let body = &window(&self.src)[b0..b1];
            match btype {
                1 => {
                    // Interface Description Block
                    if body.len() < 8 {
                        return self.stop("short interface description block");
                    }
                    let linktype = rd16(be, &body[0..2]) as u32;
                    let units = idb_tsresol(be, &body[8..]);
                    if let Kind::Pcapng { ifaces, .. } = &mut self.kind
                        && ifaces.len() < 1024
                    {
                        ifaces.push(Iface { linktype, units });
                    }
                }
                6 | 2 => {
                    // Enhanced Packet Block / obsolete Packet Block
                    if body.len() < 20 {
                        return self.stop("short packet block");
                    }
                    let iface = if btype == 6 {
                        rd32(be, &body[0..4]) as usize
                    } else {
                        rd16(be, &body[0..2]) as usize
                    };
                    let hi = rd32(be, &body[4..8]) as u64;
                    let lo = rd32(be, &body[8..12]) as u64;
                    let cap = rd32(be, &body[12..16]) as usize;
                    let orig = rd32(be, &body[16..20]);
                    if cap > body.len() - 20 {
                        return self.stop("packet longer than its block");
                    }
                    let Some(ifc) = self.iface(iface) else {
                        return self.stop("packet names an undeclared interface");
                    };
                    let ts = to_ns((hi << 32) | lo, ifc.units);
                    return Some(Frame {
                        ts,
                        linktype: ifc.linktype,
                        data: &window(&self.src)[b0 + 20..b0 + 20 + cap],
                        orig_len: orig.max(cap as u32),
                    });
                }
                _ => {
                    // 3: Simple Packet Block: interface 0, no timestamp
                    if body.len() < 4 {
                        return self.stop("short simple packet block");
                    }
                    let orig = rd32(be, &body[0..4]);
                    let n = (body.len() - 4).min(orig as usize);
                    let Some(ifc) = self.iface(0) else {
                        return self.stop("packet names an undeclared interface");
                    };
                    return Some(Frame {
                        ts: 0,
                        linktype: ifc.linktype,
                        data: &window(&self.src)[b0 + 4..b0 + 4 + n],
                        orig_len: orig.max(n as u32),
                    });
                }
            }
        }
    }

    fn iface(&self, i: usize) -> Option<Iface> {
        match &self.kind {
            Kind::Pcapng { ifaces, .. } => ifaces.get(i).copied(),
            Kind::Pcap { .. } => None,
        }
    }
}

fn idb_tsresol(be: bool, mut opts: &[u8]) -> u64 {
    while opts.len() >= 4 {
        let code = rd16(be, &opts[0..2]);
        let len = rd16(be, &opts[2..4]) as usize;
        let padded = (len + 3) & !3;
        let Some(val) = opts.get(4..4 + len) else {
            break;
        };
        if code == 0 {
            break;
        }
        if code == 9 && len >= 1 {
            let v = val[0];
            let exp = (v & 0x7f) as u32;
            let units = if v & 0x80 == 0 {
                10u64.checked_pow(exp)
            } else {
                1u64.checked_shl(exp)
            };
            return units.filter(|u| *u > 0).unwrap_or(1_000_000);
        }
        opts = opts.get(4 + padded..).unwrap_or(&[]);
    }
    1_000_000
}

#[inline]
fn to_ns(t: u64, units: u64) -> Ts {
    if units == 1_000_000_000 {
        t
    } else if units == 1_000_000 {
        t.saturating_mul(1000)
    } else {
        ((t as u128 * 1_000_000_000) / units as u128).min(u64::MAX as u128) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap_header(be: bool, nano: bool, linktype: u32) -> Vec<u8> {
        let magic: u32 = if nano { 0xA1B2_3C4D } else { 0xA1B2_C3D4 };
        let w32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let w16 = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut h = Vec::new();
        h.extend(w32(magic));
        h.extend(w16(2));
        h.extend(w16(4));
        h.extend(w32(0));
        h.extend(w32(0));
        h.extend(w32(65535));
        h.extend(w32(linktype));
        h
    }

    fn record(be: bool, sec: u32, frac: u32, data: &[u8]) -> Vec<u8> {
        let w32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut r = Vec::new();
        r.extend(w32(sec));
        r.extend(w32(frac));
        r.extend(w32(data.len() as u32));
        r.extend(w32(data.len() as u32));
        r.extend(data);
        r
    }

    #[test]
    fn classic_pcap_both_byte_orders_and_resolutions() {
        for be in [false, true] {
            for nano in [false, true] {
                let mut f = pcap_header(be, nano, 1);
                f.extend(record(be, 10, 5, b"abc"));
                f.extend(record(be, 11, 7, b"de"));
                let cf = CaptureFile::from_bytes("t", f).unwrap();
                let mut r = cf.reader();
                let a = r.next_frame().unwrap();
                assert_eq!(a.data, b"abc");
                assert_eq!(a.linktype, 1);
                assert_eq!(a.ts, 10_000_000_000 + if nano { 5 } else { 5000 });
                assert_eq!(r.next_frame().unwrap().data, b"de");
                assert!(r.next_frame().is_none());
                assert_eq!(r.stopped(), None);
            }
        }
    }

    #[test]
    fn truncated_record_is_read_up_to_the_cut() {
        let mut f = pcap_header(false, false, 1);
        f.extend(record(false, 1, 0, b"whole"));
        let mut cut = record(false, 2, 0, b"cut-in-the-middle");
        cut.truncate(20);
        f.extend(cut);
        let cf = CaptureFile::from_bytes("t", f).unwrap();
        let mut r = cf.reader();
        assert_eq!(r.next_frame().unwrap().data, b"whole");
        assert!(r.next_frame().is_none());
        assert_eq!(r.stopped().unwrap().reason, "file ends inside a packet");
    }

    #[test]
    fn bad_headers_are_named() {
        assert!(matches!(
            CaptureFile::from_bytes("x", vec![]),
            Err(OpenError::Empty { .. })
        ));
        assert!(matches!(
            CaptureFile::from_bytes("x", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
            Err(OpenError::BadMagic { .. })
        ));
        let mut h = pcap_header(false, false, 1);
        h.truncate(10);
        let e = CaptureFile::from_bytes("x.pcap", h).err().unwrap();
        assert!(e.to_string().starts_with("x.pcap: truncated file header"), "{e}");
    }

    pub(super) fn ng_block(btype: u32, body: &[u8]) -> Vec<u8> {
        let len = 12 + body.len().div_ceil(4) * 4;
        let mut b = Vec::new();
        b.extend(btype.to_le_bytes());
        b.extend((len as u32).to_le_bytes());
        b.extend(body);
        b.resize(len - 4, 0);
        b.extend((len as u32).to_le_bytes());
        b
    }

    #[test]
    fn pcapng_with_nanosecond_interface() {
        let mut f = ng_block(
            PCAPNG_SHB,
            &[
                0x4D, 0x3C, 0x2B, 0x1A, 1, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255,
            ],
        );
        // IDB: linktype 1, snaplen, option if_tsresol=9 (ns)
        let mut idb = vec![1, 0, 0, 0, 0, 0, 1, 0];
        idb.extend([9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0]);
        f.extend(ng_block(1, &idb));
        let ts: u64 = 1_700_000_000_123_456_789;
        let mut epb = Vec::new();
        epb.extend(0u32.to_le_bytes());
        epb.extend(((ts >> 32) as u32).to_le_bytes());
        epb.extend((ts as u32).to_le_bytes());
        epb.extend(3u32.to_le_bytes());
        epb.extend(3u32.to_le_bytes());
        epb.extend(b"xyz");
        f.extend(ng_block(6, &epb));
        let cf = CaptureFile::from_bytes("t.pcapng", f).unwrap();
        let mut r = cf.reader();
        let fr = r.next_frame().unwrap();
        assert_eq!((fr.ts, fr.data, fr.linktype), (ts, &b"xyz"[..], 1));
        assert!(r.next_frame().is_none());
        assert!(r.stopped().is_none());
    }
}

#[cfg(test)]
mod chunk_tests {
    use super::tests::ng_block;
    use super::*;

    fn pcap_file(records: &[(u32, Vec<u8>)], tail: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend(0xA1B2_C3D4u32.to_le_bytes());
        f.extend(2u16.to_le_bytes());
        f.extend(4u16.to_le_bytes());
        f.extend([0u8; 8]);
        f.extend(262_144u32.to_le_bytes());
        f.extend(1u32.to_le_bytes());
        for (i, data) in records {
            f.extend(i.to_le_bytes());
            f.extend(0u32.to_le_bytes());
            f.extend((data.len() as u32).to_le_bytes());
            f.extend((data.len() as u32).to_le_bytes());
            f.extend(data);
        }
        f.extend(tail);
        f
    }

    /// Write `bytes` to a file and walk it both ways, chunked from the file and in memory:
    /// every frame, every offset and the stop must agree. Returns the frames seen.
    fn walk_both(name: &str, bytes: Vec<u8>) -> (usize, Option<Stopped>) {
        let path = std::env::temp_dir().join(format!("apitap-chunks-{}-{name}", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        let file = CaptureFile::open(path.to_str().unwrap()).unwrap();
        assert!(matches!(file.buf, Buf::File(..)), "a plain file is read in chunks");
        let mem = CaptureFile::from_bytes("mem", bytes).unwrap();
        assert_eq!(file.len(), mem.len());
        let (mut a, mut b) = (file.reader(), mem.reader());
        let mut n = 0;
        loop {
            let (oa, ob) = (a.offset(), b.offset());
            assert_eq!(oa, ob, "offset before frame {n}");
            match (a.next_frame(), b.next_frame()) {
                (Some(x), Some(y)) => {
                    assert_eq!(
                        (x.ts, x.linktype, x.data, x.orig_len),
                        (y.ts, y.linktype, y.data, y.orig_len),
                        "frame {n}"
                    );
                    n += 1;
                }
                (None, None) => break,
                (x, y) => panic!("frame {n}: {:?} vs {:?}", x.map(|f| f.ts), y.map(|f| f.ts)),
            }
        }
        std::fs::remove_file(&path).ok();
        assert_eq!(a.stopped(), b.stopped());
        // asked again after the end: still the end, nothing read past it
        assert!(a.next_frame().is_none() && b.next_frame().is_none());
        (n, a.stopped())
    }

    #[test]
    fn a_file_read_in_chunks_yields_what_an_in_memory_walk_yields() {
        // records of every size straddle the chunk edges; two of the largest allowed
        // (256 KiB, more than a chunk) make the buffer grow; the file ends in a cut header
        let mut recs: Vec<(u32, Vec<u8>)> = (0..3000u32)
            .map(|i| {
                (
                    i,
                    (0..(i * 37 % 1500 + 1) as usize)
                        .map(|k| (k as u32 ^ i) as u8)
                        .collect(),
                )
            })
            .collect();
        recs.insert(100, (7, vec![0xAB; MAX_RECORD]));
        recs.insert(2000, (8, vec![0xCD; MAX_RECORD - 3]));
        let (n, stop) = walk_both("many.pcap", pcap_file(&recs, &[1, 2, 3]));
        assert_eq!(n, 3002);
        assert_eq!(stop.unwrap().reason, "file ends inside a record header");
    }

    #[test]
    fn a_cut_or_corrupt_record_stops_the_chunked_walk_where_the_in_memory_one_stops() {
        let recs: Vec<(u32, Vec<u8>)> = (0..700u32).map(|i| (i, vec![i as u8; 1200])).collect();
        let whole = pcap_file(&recs, &[]);
        // cut inside a packet, at every distance from a chunk edge that matters
        for cut in [CHUNK - 1, CHUNK, CHUNK + 7, 2 * CHUNK + 20, whole.len() - 1] {
            let (_, stop) = walk_both("cut.pcap", whole[..cut].to_vec());
            assert!(stop.is_some(), "cut at {cut}");
        }
        // a record claiming more than 256 KiB, past the first chunk
        let mut bad = pcap_file(&recs, &[]);
        let at = 24 + 300 * (16 + 1200);
        bad[at + 8..at + 12].copy_from_slice(&(MAX_RECORD as u32 + 1).to_le_bytes());
        let (n, stop) = walk_both("corrupt.pcap", bad);
        assert_eq!(n, 300);
        assert_eq!(stop.unwrap().offset, at);
    }

    fn ng_packet(i: u32, data: &[u8]) -> Vec<u8> {
        let mut epb = Vec::new();
        epb.extend(0u32.to_le_bytes());
        epb.extend(0u32.to_le_bytes());
        epb.extend(i.to_le_bytes());
        epb.extend((data.len() as u32).to_le_bytes());
        epb.extend((data.len() as u32).to_le_bytes());
        epb.extend(data);
        ng_block(6, &epb)
    }

    #[test]
    fn pcapng_blocks_across_chunks_and_skipped_blocks_larger_than_a_chunk() {
        let mut f = ng_block(
            PCAPNG_SHB,
            &[
                0x4D, 0x3C, 0x2B, 0x1A, 1, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255,
            ],
        );
        f.extend(ng_block(1, &[1, 0, 0, 0, 0, 0, 4, 0]));
        for i in 0..2000u32 {
            f.extend(ng_packet(i, &vec![i as u8; (i * 53 % 1400 + 1) as usize]));
            if i % 700 == 5 {
                // a custom block of 3 chunks: passed over unread
                f.extend(ng_block(0x0000_0BAD, &vec![0xEE; 3 * CHUNK]));
            }
        }
        // a packet block larger than a chunk
        f.extend(ng_packet(9, &vec![0x11; CHUNK + 100]));
        let (n, stop) = walk_both("blocks.pcapng", f.clone());
        assert_eq!((n, stop), (2001, None));
        // the file ends inside a skipped block
        let mut cut = f.clone();
        cut.extend(ng_block(0x0000_0BAD, &vec![0xEE; 2 * CHUNK]));
        cut.truncate(cut.len() - 10);
        let (n, stop) = walk_both("cutblock.pcapng", cut);
        assert_eq!((n, stop.unwrap().reason), (2001, "file ends inside a block"));
        // a packet block beyond the bound the reader buffers: stopped, nothing allocated for it
        let mut huge = f;
        let at = huge.len();
        huge.extend(ng_packet(10, b"x"));
        huge[at + 4..at + 8].copy_from_slice(&(MAX_BLOCK as u32 + 4).to_le_bytes());
        let (_, stop) = walk_both("huge.pcapng", huge);
        assert_eq!(stop.unwrap().reason, "pcapng block beyond 16 MiB (corrupt block)");
    }

    #[test]
    fn a_file_cut_or_grown_while_it_is_read_is_read_up_to_what_is_there() {
        use std::io::Write;
        let recs: Vec<(u32, Vec<u8>)> = (0..2000u32).map(|i| (i, vec![i as u8; 1000])).collect();
        let bytes = pcap_file(&recs, &[]);
        let path = std::env::temp_dir().join(format!("apitap-chunks-{}-shrink.pcap", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        let f = CaptureFile::open(path.to_str().unwrap()).unwrap();
        let mut r = f.reader();
        assert!(r.next_frame().is_some());
        // cut by another process after the first chunk was read: a mapping would end the
        // process (SIGBUS); here the walk stops at the cut
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(CHUNK as u64 + 500)
            .unwrap();
        let mut n = 1;
        while r.next_frame().is_some() {
            n += 1;
        }
        assert!(n < 2000, "{n}");
        assert_eq!(r.stopped().unwrap().reason, "file ends inside a packet");
        // grown after it was opened: read up to the length it had then
        std::fs::write(&path, &bytes).unwrap();
        let f = CaptureFile::open(path.to_str().unwrap()).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&bytes[24..24 + 1016])
            .unwrap();
        let mut r = f.reader();
        let mut n = 0;
        while r.next_frame().is_some() {
            n += 1;
        }
        std::fs::remove_file(&path).ok();
        assert_eq!((n, r.stopped()), (2000, None));
    }
}

#[cfg(test)]
mod pipe_tests {
    use super::*;

    #[test]
    fn a_named_pipe_is_read_whole_like_stdin() {
        // `apitap replay <(zcat f.pcap.gz)` hands over a pipe: no length, no chunked re-reads
        let dir = std::env::temp_dir().join(format!("apitap-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p");
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string path; mkfifo only creates the node
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let mut bytes = Vec::new();
        bytes.extend(0xA1B2_C3D4u32.to_le_bytes());
        bytes.extend([2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 0, 0, 1, 0, 0, 0]);
        for i in 0..500u32 {
            bytes.extend(i.to_le_bytes());
            bytes.extend([0; 4]);
            bytes.extend(1000u32.to_le_bytes());
            bytes.extend(1000u32.to_le_bytes());
            bytes.extend(vec![i as u8; 1000]);
        }
        let gz = {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&bytes).unwrap();
            e.finish().unwrap()
        };
        for (what, data) in [("plain", bytes.clone()), ("gzip", gz)] {
            let p = path.clone();
            let w = std::thread::spawn(move || std::fs::write(p, data).unwrap());
            let f = CaptureFile::open(path.to_str().unwrap()).unwrap_or_else(|e| panic!("{what}: {e}"));
            w.join().unwrap();
            let mut r = f.reader();
            let mut n = 0;
            while let Some(fr) = r.next_frame() {
                assert_eq!(fr.data, &vec![n as u8; 1000][..], "{what} frame {n}");
                n += 1;
            }
            assert_eq!((n, r.stopped()), (500, None), "{what}");
        }
        // a pipe that gives nothing is an empty capture, named
        let p = path.clone();
        let w = std::thread::spawn(move || std::fs::write(p, b"").unwrap());
        let e = CaptureFile::open(path.to_str().unwrap()).err().unwrap();
        w.join().unwrap();
        assert!(matches!(e, OpenError::Empty { .. }), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
