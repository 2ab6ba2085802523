//! Capture files: classic pcap (both byte orders, micro- and nanosecond) and pcapng.
//!
//! A plain file is memory-mapped read-only and walked in place: a [`Frame`] borrows its bytes
//! from the map, nothing is copied. gzip'd captures and stdin (`-`) are read into one owned
//! buffer first (they cannot be mapped). The header is validated when the file is opened, so a
//! wrong magic or a cut header is reported before any packet is processed. A file cut in the
//! middle of a record (a capture interrupted by a crash) is read up to the cut and the walker
//! reports where it stopped; a record whose length fields are impossible stops the walk the same
//! way, because nothing after it can be trusted to be aligned.

use std::fs::File;
use std::io::{self, Read};

use memmap2::Mmap;

use super::{Frame, Ts};

/// Largest record we accept, whatever the header's snap length says (libpcap's own ceiling).
const MAX_RECORD: usize = 256 * 1024;

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
    Map(Mmap),
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
        let buf = if path == "-" {
            let mut v = Vec::new();
            io::stdin().lock().read_to_end(&mut v).map_err(io_err)?;
            Buf::Owned(v)
        } else {
            let file = File::open(path).map_err(io_err)?;
            let len = file.metadata().map_err(io_err)?.len();
            if len == 0 {
                return Err(OpenError::Empty { path: path.to_string() });
            }
            // SAFETY: the map is read-only; a capture file truncated by another process while
            // we read it is the one hazard (SIGBUS), documented in the README.
            Buf::Map(unsafe { Mmap::map(&file) }.map_err(io_err)?)
        };
        let buf = match buf {
            b if is_gzip(bytes_of(&b)) => {
                let mut out = Vec::new();
                flate2::read::MultiGzDecoder::new(bytes_of(&b))
                    .read_to_end(&mut out)
                    .map_err(|source| OpenError::Gzip {
                        path: path.to_string(),
                        source,
                    })?;
                Buf::Owned(out)
            }
            b => b,
        };
        let format = sniff(path, bytes_of(&buf))?;
        Ok(CaptureFile {
            name: path.to_string(),
            buf,
            format,
        })
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

    pub fn bytes(&self) -> &[u8] {
        bytes_of(&self.buf)
    }

    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }

    /// A walker over this file's packet records.
    pub fn reader(&self) -> Reader<'_> {
        let data = self.bytes();
        // Only a file mapping gives its pages back behind the reader: they are the file's, and
        // come back from it if touched again. Heap buffers (stdin, gzip) are never released.
        let release = matches!(self.buf, Buf::Map(_));
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
        Reader {
            data,
            pos,
            kind,
            stopped: None,
            release,
            released: 0,
            prefetched: pos,
        }
    }
}

fn bytes_of(b: &Buf) -> &[u8] {
    match b {
        Buf::Map(m) => m,
        Buf::Owned(v) => v,
    }
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

/// Walks packet records, yielding frames that borrow from the file buffer.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    kind: Kind,
    stopped: Option<Stopped>,
    /// Give the mapped file's pages behind the reader back to the kernel (`madvise`), so a
    /// replayed capture does not show as resident memory and one larger than free memory
    /// replays at full speed. `released`: the offset released so far.
    release: bool,
    released: usize,
    /// Cache lines up to this offset have been prefetched (see [`PREFETCH_AHEAD`]).
    prefetched: usize,
}

/// Bytes ahead of the reader whose cache lines are prefetched. The TCP checksum is the first
/// to read a packet's bytes, and waited on memory for them (the hardware prefetcher stops at
/// every 4 KiB page): on the 1.6 GB mixed capture the checksum fell from ~15% to ~7% of the
/// capture thread's samples, part of it moving to the prefetches; a walk plus checksum of the
/// mapped file alone took ~25% less time (4 KiB ahead did as well as 8 KiB; 2 KiB and 16 KiB
/// worse).
const PREFETCH_AHEAD: usize = 4 << 10;

/// Release mapped pages in steps of this many bytes, keeping the last `RELEASE_KEEP` bytes
/// behind the reader mapped (frames borrowed from them may still be in use; released pages
/// would come back from the file anyway, only slower).
const RELEASE_STEP: usize = 16 << 20;
const RELEASE_KEEP: usize = 4 << 20;

impl<'a> Reader<'a> {
    /// Byte offset of the next record (progress reporting).
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Set when the walk ended early: the file is cut or a record is corrupt.
    pub fn stopped(&self) -> Option<Stopped> {
        self.stopped
    }

    /// `madvise(MADV_DONTNEED)` the mapped pages from `released` to `RELEASE_KEEP` bytes
    /// behind the reader. On a read-only private file mapping this drops the process's
    /// mapping of those pages (they stay in the page cache); touching them again reads them
    /// back from the file, so every borrowed frame stays valid.
    #[cold]
    fn release_behind(&mut self) {
        const PAGE: usize = 4096; // madvise needs a page-aligned start; 4 KiB divides every page size
        let base = self.data.as_ptr() as usize;
        let start = (base + self.released).next_multiple_of(PAGE);
        let end = (base + self.pos - RELEASE_KEEP) & !(PAGE - 1);
        if end > start {
            // SAFETY: [start, end) lies inside this reader's mapping (`data` is the whole
            // mapped file), the mapping is private and read-only, and MADV_DONTNEED on it only
            // makes later reads fault the same file bytes back in. A failure changes nothing.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
            }
        }
        self.released = end.saturating_sub(base).max(self.released);
    }

    /// Prefetch the cache lines up to `PREFETCH_AHEAD` bytes past the reader, each line once
    /// (a hint only: frames and their bytes are the same with or without it).
    #[inline(always)]
    fn prefetch_ahead(&mut self) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let to = (self.pos + PREFETCH_AHEAD).min(self.data.len());
            while self.prefetched < to {
                // SAFETY: `prefetched < to <= data.len()`: the address is inside `data`, and a
                // prefetch never faults nor changes memory.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(self.data.as_ptr().add(self.prefetched) as *const i8) };
                self.prefetched += 64;
            }
        }
    }

    fn stop(&mut self, reason: &'static str) -> Option<Frame<'a>> {
        self.stopped = Some(Stopped {
            offset: self.pos,
            reason,
        });
        self.pos = self.data.len();
        None
    }

    /// The next frame, or `None` at the end (or at a cut; see [`Reader::stopped`]).
    #[inline]
    pub fn next_frame(&mut self) -> Option<Frame<'a>> {
        if self.release && self.pos >= self.released + RELEASE_STEP + RELEASE_KEEP {
            self.release_behind();
        }
        self.prefetch_ahead();
        match self.kind {
            Kind::Pcap { be, nano, linktype } => self.next_pcap(be, nano, linktype),
            Kind::Pcapng { .. } => self.next_pcapng(),
        }
    }

    #[inline]
    fn next_pcap(&mut self, be: bool, nano: bool, linktype: u32) -> Option<Frame<'a>> {
        let rest = self.data.get(self.pos..)?;
        if rest.is_empty() {
            return None;
        }
        if rest.len() < 16 {
            return self.stop("file ends inside a record header");
        }
        let sec = rd32(be, &rest[0..4]) as u64;
        let frac = rd32(be, &rest[4..8]) as u64;
        let incl = rd32(be, &rest[8..12]) as usize;
        let orig = rd32(be, &rest[12..16]);
        if incl > MAX_RECORD {
            return self.stop("record length beyond 256 KiB (corrupt record)");
        }
        let Some(data) = rest.get(16..16 + incl) else {
            return self.stop("file ends inside a packet");
        };
        self.pos += 16 + incl;
        let ts = sec * 1_000_000_000 + if nano { frac } else { frac * 1000 };
        Some(Frame {
            ts,
            linktype,
            data,
            orig_len: orig.max(incl as u32),
        })
    }

    fn next_pcapng(&mut self) -> Option<Frame<'a>> {
        loop {
            let rest = self.data.get(self.pos..)?;
            if rest.is_empty() {
                return None;
            }
            if rest.len() < 12 {
                return self.stop("file ends inside a block header");
            }
            let Kind::Pcapng { be, .. } = self.kind else {
                return None;
            };
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
            let Some(block) = rest.get(..blen) else {
                return self.stop("file ends inside a block");
            };
            let body = &block[8..blen - 4];
            self.pos += blen;
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
                    let Some(data) = body.get(20..20usize.saturating_add(cap)) else {
                        return self.stop("packet longer than its block");
                    };
                    let Some(ifc) = self.iface(iface) else {
                        return self.stop("packet names an undeclared interface");
                    };
                    let ts = to_ns((hi << 32) | lo, ifc.units);
                    return Some(Frame {
                        ts,
                        linktype: ifc.linktype,
                        data,
                        orig_len: orig.max(cap as u32),
                    });
                }
                3 => {
                    // Simple Packet Block: interface 0, no timestamp
                    if body.len() < 4 {
                        return self.stop("short simple packet block");
                    }
                    let orig = rd32(be, &body[0..4]);
                    let data = &body[4..4 + (body.len() - 4).min(orig as usize)];
                    let Some(ifc) = self.iface(0) else {
                        return self.stop("packet names an undeclared interface");
                    };
                    return Some(Frame {
                        ts: 0,
                        linktype: ifc.linktype,
                        data,
                        orig_len: orig.max(data.len() as u32),
                    });
                }
                _ => {} // SHB, statistics, name resolution, custom: nothing for us
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

    fn ng_block(btype: u32, body: &[u8]) -> Vec<u8> {
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
mod prefetch_tests {
    use super::*;

    /// The reader prefetches ahead of itself on a mapped file: the walk must see exactly the
    /// records an in-memory walk sees, over many pages and a file whose end is not on a page
    /// or cache-line boundary (the prefetch must stop at the end of the mapping).
    #[test]
    fn mapped_walk_with_prefetch_sees_the_same_records_as_an_in_memory_walk() {
        let mut f = Vec::new();
        f.extend(0xA1B2_C3D4u32.to_le_bytes());
        f.extend(2u16.to_le_bytes());
        f.extend(4u16.to_le_bytes());
        f.extend([0u8; 8]);
        f.extend(65535u32.to_le_bytes());
        f.extend(1u32.to_le_bytes());
        for i in 0..3000u32 {
            let len = (i * 37 % 1500 + 1) as usize;
            f.extend(i.to_le_bytes());
            f.extend(0u32.to_le_bytes());
            f.extend((len as u32).to_le_bytes());
            f.extend((len as u32).to_le_bytes());
            f.extend((0..len).map(|k| (k as u32 ^ i) as u8));
        }
        f.extend([1, 2, 3]); // a cut record header at the very end
        let path = std::env::temp_dir().join(format!("apitap-prefetch-{}.pcap", std::process::id()));
        std::fs::write(&path, &f).unwrap();
        let mapped = CaptureFile::open(path.to_str().unwrap()).unwrap();
        let owned = CaptureFile::from_bytes("mem", f).unwrap();
        let (mut a, mut b) = (mapped.reader(), owned.reader());
        let mut n = 0;
        loop {
            match (a.next_frame(), b.next_frame()) {
                (Some(x), Some(y)) => {
                    assert_eq!((x.ts, x.data, x.orig_len), (y.ts, y.data, y.orig_len), "record {n}");
                    n += 1;
                }
                (None, None) => break,
                (x, y) => panic!("record {n}: {:?} vs {:?}", x.map(|f| f.ts), y.map(|f| f.ts)),
            }
        }
        std::fs::remove_file(&path).ok();
        assert_eq!(n, 3000);
        assert_eq!(a.stopped(), b.stopped());
        assert_eq!(a.stopped().unwrap().reason, "file ends inside a record header");
    }
}
