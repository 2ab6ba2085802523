//! HPACK (RFC 7541) header block decoding for a passive observer.
//!
//! One [`Decoder`] per direction of a connection. An endpoint treats a reference to an entry it
//! does not have as a fatal error; a sensor that lost a packet, or joined a connection late,
//! does not know the older entries of the table, so a reference beyond what it knows is an
//! *unknown* field: the block goes on decoding (its insertions keep the table's newest entries
//! exact), the caller marks the transaction `gap`, and the table is whole again once more bytes
//! have been inserted since the loss than the table can hold (everything older was evicted), or
//! the encoder resets it with a size update to 0.
//!
//! Caps: the table never holds more than `min(size update, MAX_TABLE)` bytes (entries counted
//! as RFC 7541 §4.1 does); integers are bounded; the caller bounds the block's length, and the
//! decoded header list is cut at the caller's cap (the fields past it are decoded for their
//! table insertions and dropped).

use std::collections::VecDeque;
use std::sync::OnceLock;

use super::huffman_table::CODES;

/// Largest dynamic table kept, bytes (RFC 7541 §4.1 sizes). A size update above it is honoured
/// up to this cap only: entries the encoder still has are then unknown to us (a gap, never an
/// error or unbounded memory). Default SETTINGS_HEADER_TABLE_SIZE is 4096; nginx and Go keep it.
pub const MAX_TABLE: usize = 64 << 10;

/// The table size every connection starts with (RFC 9113 §6.5.2).
pub const DEFAULT_TABLE: usize = 4096;

/// RFC 7541 Appendix A.
pub const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// A header block that cannot be decoded (the table may have changed in ways we cannot follow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HpackError {
    /// The block ends inside a field.
    Truncated,
    /// An integer above 2^28 (no real field is that long).
    IntegerOverflow,
    /// A Huffman string with a bad padding or an EOS symbol.
    Huffman,
    /// A dynamic table size update after the first field of a block.
    LateSizeUpdate,
    /// Index 0.
    ZeroIndex,
}

/// What a block's decoding found besides its fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockInfo {
    /// Fields whose name or value refers to a table entry we do not know.
    pub unknown: u32,
    /// Fields dropped past the header list cap.
    pub dropped: u32,
    /// A size update asked for more than [`MAX_TABLE`] (or the peer's SETTINGS limit).
    pub oversized_table: bool,
}

/// A field as decoded: the name is `None` when it referred to an unknown entry.
pub type FieldSink<'a> = dyn FnMut(&[u8], &[u8]) + 'a;

/// A dynamic table entry: name and value.
type Entry = (Box<[u8]>, Box<[u8]>);

/// One direction's HPACK state.
#[derive(Debug)]
pub struct Decoder {
    /// Newest first: index 62 is `table[0]`.
    table: VecDeque<Entry>,
    size: usize,
    max: usize,
    /// The table may hold entries older than ours that we never saw (after a loss or a late
    /// start); cleared once `since_loss` passes `max`.
    partial: bool,
    since_loss: usize,
    /// SETTINGS_HEADER_TABLE_SIZE the receiving side announced (for the anomaly only).
    pub limit: usize,
    scratch: Vec<u8>,
    scratch2: Vec<u8>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            max: DEFAULT_TABLE,
            partial: false,
            since_loss: 0,
            limit: DEFAULT_TABLE,
            scratch: Vec::new(),
            scratch2: Vec::new(),
        }
    }

    /// The state of the table is no longer known (a lost or undecodable block).
    pub fn lose(&mut self) {
        self.table.clear();
        self.size = 0;
        self.partial = true;
        self.since_loss = 0;
    }

    /// Does the table hold everything the encoder's does?
    pub fn known(&self) -> bool {
        !self.partial
    }

    /// Bytes held by the dynamic table (RFC 7541 §4.1).
    pub fn table_size(&self) -> usize {
        self.size
    }

    /// Decode one complete header block, handing each field to `sink` (names of unknown
    /// entries are empty; values of unknown entries are empty). `cap`: most bytes of fields
    /// (name + value + 32 each) handed out.
    pub fn decode(&mut self, mut b: &[u8], cap: usize, sink: &mut FieldSink<'_>) -> Result<BlockInfo, HpackError> {
        let mut info = BlockInfo::default();
        let mut listed = 0usize;
        let mut first = true;
        while let Some(&c) = b.first() {
            if c & 0x80 != 0 {
                // indexed field
                let i = int(&mut b, 7)?;
                if i == 0 {
                    return Err(HpackError::ZeroIndex);
                }
                match self.get(i) {
                    Some((n, v)) => emit(sink, n, v, cap, &mut listed, &mut info),
                    None => info.unknown += 1,
                }
            } else if c & 0xe0 == 0x20 {
                if !first {
                    return Err(HpackError::LateSizeUpdate);
                }
                let n = int(&mut b, 5)?;
                if n > self.limit.max(DEFAULT_TABLE) || n > MAX_TABLE {
                    info.oversized_table = true;
                }
                self.max = n.min(MAX_TABLE);
                if n == 0 && self.partial {
                    // the encoder emptied its table: we know it whole again
                    self.partial = false;
                }
                self.evict(0);
                continue;
            } else {
                // literal: 01 incremental indexing (6-bit index), 0000 without, 0001 never
                let (prefix, index) = if c & 0x40 != 0 { (6, true) } else { (4, false) };
                let i = int(&mut b, prefix)?;
                let mut name = std::mem::take(&mut self.scratch);
                let mut name_known = true;
                name.clear();
                if i == 0 {
                    string(&mut b, &mut name)?;
                } else {
                    match self.get(i) {
                        Some((n, _)) => name.extend_from_slice(n),
                        None => name_known = false,
                    }
                }
                let mut value = std::mem::take(&mut self.scratch2);
                value.clear();
                let r = string(&mut b, &mut value);
                if r.is_ok() {
                    if name_known {
                        emit(sink, &name, &value, cap, &mut listed, &mut info);
                    } else {
                        info.unknown += 1;
                    }
                    if index {
                        if name_known {
                            self.insert(&name, &value);
                        } else {
                            // An entry we cannot name still takes its place in the table:
                            // later indices shift. Its size is unknown: the table is partial.
                            self.insert(b"", &value);
                            self.partial = true;
                        }
                    }
                }
                self.scratch = name;
                self.scratch2 = value;
                r?;
            }
            first = false;
        }
        Ok(info)
    }

    fn get(&self, i: usize) -> Option<(&[u8], &[u8])> {
        if i == 0 {
            return None;
        }
        if i <= STATIC.len() {
            let (n, v) = STATIC[i - 1];
            return Some((n.as_bytes(), v.as_bytes()));
        }
        let (n, v) = self.table.get(i - STATIC.len() - 1)?;
        if n.is_empty() {
            // an entry inserted with an unknown name
            return None;
        }
        Some((n, v))
    }

    fn insert(&mut self, name: &[u8], value: &[u8]) {
        let sz = name.len() + value.len() + 32;
        self.since_loss = self.since_loss.saturating_add(sz);
        if sz > self.max {
            self.table.clear();
            self.size = 0;
        } else {
            self.evict(sz);
            self.table.push_front((name.into(), value.into()));
            self.size += sz;
        }
        if self.partial && self.since_loss > self.max && self.table.iter().all(|(n, _)| !n.is_empty()) {
            self.partial = false;
        }
    }

    /// Evict the oldest entries until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max {
            match self.table.pop_back() {
                Some((n, v)) => self.size -= n.len() + v.len() + 32,
                None => {
                    self.size = 0;
                    break;
                }
            }
        }
    }
}

fn emit(sink: &mut FieldSink<'_>, n: &[u8], v: &[u8], cap: usize, listed: &mut usize, info: &mut BlockInfo) {
    let sz = n.len() + v.len() + 32;
    if *listed + sz > cap {
        info.dropped += 1;
        return;
    }
    *listed += sz;
    sink(n, v);
}

/// RFC 7541 §5.1 integer with an `n`-bit prefix; `b` advances past it.
fn int(b: &mut &[u8], n: u8) -> Result<usize, HpackError> {
    let (&first, rest) = b.split_first().ok_or(HpackError::Truncated)?;
    let mask = (1u16 << n) as usize - 1;
    let mut v = first as usize & mask;
    *b = rest;
    if v < mask {
        return Ok(v);
    }
    let mut shift = 0u32;
    loop {
        let (&c, rest) = b.split_first().ok_or(HpackError::Truncated)?;
        *b = rest;
        v += ((c & 0x7f) as usize) << shift;
        if v > 1 << 28 {
            return Err(HpackError::IntegerOverflow);
        }
        if c & 0x80 == 0 {
            return Ok(v);
        }
        shift += 7;
        if shift > 28 {
            return Err(HpackError::IntegerOverflow);
        }
    }
}

/// RFC 7541 §5.2 string literal, appended to `out`.
fn string(b: &mut &[u8], out: &mut Vec<u8>) -> Result<(), HpackError> {
    let huff = b.first().ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = int(b, 7)?;
    if len > b.len() {
        return Err(HpackError::Truncated);
    }
    let (s, rest) = b.split_at(len);
    *b = rest;
    if huff {
        huffman_decode(s, out)
    } else {
        out.extend_from_slice(s);
        Ok(())
    }
}

/// Canonical-code decoding tables built once from [`CODES`] (the code is canonical: codes of
/// each length are consecutive, in symbol order; a unit test checks it).
struct Huff {
    /// Left-justified (32-bit) limit of the codes of each length: a window below `limit[l]`
    /// (and not below `limit[l-1]`) starts with a code of length `l`.
    limit: [u64; 31],
    /// First code of each length, and the index in `syms` of its symbol.
    first: [u32; 31],
    offset: [usize; 31],
    syms: [u16; 257],
}

fn huff() -> &'static Huff {
    static H: OnceLock<Huff> = OnceLock::new();
    H.get_or_init(|| {
        let mut order: Vec<u16> = (0..257u16).collect();
        order.sort_by_key(|&s| (CODES[s as usize].1, s));
        let mut h = Huff {
            limit: [0; 31],
            first: [0; 31],
            offset: [0; 31],
            syms: [0; 257],
        };
        for (i, s) in order.iter().enumerate() {
            h.syms[i] = *s;
        }
        let mut i = 0;
        for l in 1..=30u32 {
            let start = i;
            while i < order.len() && CODES[order[i] as usize].1 as u32 == l {
                i += 1;
            }
            let (first, count) = if start < i {
                (CODES[order[start] as usize].0, (i - start) as u32)
            } else {
                // no code of this length: an empty range at the next code's prefix
                let next = order.get(i).map_or(u32::MAX, |s| {
                    let (c, len) = CODES[*s as usize];
                    c >> (len as u32 - l)
                });
                (next, 0)
            };
            h.first[l as usize] = first;
            h.offset[l as usize] = start;
            h.limit[l as usize] = ((first as u64) + count as u64) << (32 - l);
        }
        h
    })
}

/// Decode an RFC 7541 Appendix B Huffman string, appending to `out`.
pub fn huffman_decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), HpackError> {
    let h = huff();
    let mut acc: u64 = 0;
    let mut nbits: u32 = 0;
    let mut i = 0;
    loop {
        while nbits <= 56 && i < src.len() {
            acc |= (src[i] as u64) << (56 - nbits);
            nbits += 8;
            i += 1;
        }
        if nbits == 0 {
            return Ok(());
        }
        let w = acc >> 32;
        let Some(l) = (5..=30u32).find(|l| w < h.limit[*l as usize]) else {
            return Err(HpackError::Huffman);
        };
        if l > nbits {
            // the end: up to 7 bits of EOS prefix (all ones) pad the last byte
            let pad = (w >> (32 - nbits)) as u32;
            return if nbits < 8 && pad == (1 << nbits) - 1 {
                Ok(())
            } else {
                Err(HpackError::Huffman)
            };
        }
        let code = (w >> (32 - l)) as u32;
        let k = h.offset[l as usize] + code.wrapping_sub(h.first[l as usize]) as usize;
        let sym = *h.syms.get(k).ok_or(HpackError::Huffman)?;
        if sym == 256 {
            return Err(HpackError::Huffman);
        }
        out.push(sym as u8);
        acc <<= l;
        nbits -= l;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    fn block(d: &mut Decoder, h: &str) -> Vec<(String, String)> {
        let mut v = Vec::new();
        let info = d
            .decode(&hex(h), 1 << 20, &mut |n, val| {
                v.push((String::from_utf8_lossy(n).into(), String::from_utf8_lossy(val).into()))
            })
            .unwrap();
        assert_eq!(info, BlockInfo::default());
        v
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn huffman_code_is_canonical() {
        let mut order: Vec<usize> = (0..257).collect();
        order.sort_by_key(|&s| (CODES[s].1, s));
        let mut code = 0u32;
        for w in order.windows(2) {
            let (a, b) = (CODES[w[0]], CODES[w[1]]);
            assert_eq!(a.0, code);
            code = (code + 1) << (b.1 - a.1);
        }
        // every symbol round-trips through the decoder
        for s in 0..256usize {
            let (c, l) = CODES[s];
            let bits = (c as u64) << (64 - l as u64) | ((1u64 << (64 - l as u64)) - 1);
            let nbytes = (l as usize).div_ceil(8);
            let src: Vec<u8> = (0..nbytes).map(|i| (bits >> (56 - 8 * i)) as u8).collect();
            let mut out = Vec::new();
            huffman_decode(&src, &mut out).unwrap();
            assert_eq!(out, vec![s as u8], "symbol {s}");
        }
    }

    /// RFC 7541 C.1 integers.
    #[test]
    fn rfc7541_c1_integers() {
        let mut b: &[u8] = &[0x0a];
        assert_eq!(int(&mut b, 5), Ok(10));
        let mut b: &[u8] = &[0x1f, 0x9a, 0x0a];
        assert_eq!(int(&mut b, 5), Ok(1337));
        let mut b: &[u8] = &[0x2a];
        assert_eq!(int(&mut b, 8), Ok(42));
        let mut b: &[u8] = &[0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(int(&mut b, 5), Err(HpackError::IntegerOverflow));
    }

    /// RFC 7541 C.2: one representation each.
    #[test]
    fn rfc7541_c2_field_representations() {
        let mut d = Decoder::new();
        assert_eq!(
            block(
                &mut d,
                "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"
            ),
            pairs(&[("custom-key", "custom-header")])
        );
        assert_eq!(d.table_size(), 55);
        let mut d = Decoder::new();
        assert_eq!(
            block(&mut d, "040c 2f73 616d 706c 652f 7061 7468"),
            pairs(&[(":path", "/sample/path")])
        );
        assert_eq!(d.table_size(), 0);
        let mut d = Decoder::new();
        assert_eq!(
            block(&mut d, "1008 7061 7373 776f 7264 0673 6563 7265 74"),
            pairs(&[("password", "secret")])
        );
        assert_eq!(d.table_size(), 0);
        assert_eq!(block(&mut d, "82"), pairs(&[(":method", "GET")]));
    }

    const C3: [&str; 3] = [
        "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "8286 84be 5808 6e6f 2d63 6163 6865",
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ];
    const C4: [&str; 3] = [
        "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
        "8286 84be 5886 a8eb 1064 9cbf",
        "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    ];

    fn c3_expected() -> [Vec<(String, String)>; 3] {
        let base = [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ];
        let mut two = base.to_vec();
        two.push(("cache-control", "no-cache"));
        let three = [
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ];
        [pairs(&base), pairs(&two), pairs(&three)]
    }

    /// RFC 7541 C.3 (requests without Huffman) and C.4 (with): table sizes 57, 110, 164.
    #[test]
    fn rfc7541_c3_c4_requests() {
        for blocks in [C3, C4] {
            let mut d = Decoder::new();
            for ((h, want), size) in blocks.iter().zip(c3_expected()).zip([57, 110, 164]) {
                assert_eq!(block(&mut d, h), want);
                assert_eq!(d.table_size(), size);
            }
        }
    }

    const C5: [&str; 3] = [
        "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "4803 3330 37c1 c0bf",
        "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31",
    ];
    const C6: [&str; 3] = [
        "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        "4883 640e ffc1 c0bf",
        "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
    ];

    /// RFC 7541 C.5 (responses without Huffman) and C.6 (with), with a 256-byte table: the
    /// evictions of the second and third blocks.
    #[test]
    fn rfc7541_c5_c6_responses_with_eviction() {
        let date1 = ("date", "Mon, 21 Oct 2013 20:13:21 GMT");
        let loc = ("location", "https://www.example.com");
        let want = [
            pairs(&[(":status", "302"), ("cache-control", "private"), date1, loc]),
            pairs(&[(":status", "307"), ("cache-control", "private"), date1, loc]),
            pairs(&[
                (":status", "200"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
                loc,
                ("content-encoding", "gzip"),
                ("set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"),
            ]),
        ];
        for blocks in [C5, C6] {
            let mut d = Decoder::new();
            d.max = 256;
            for ((h, w), size) in blocks.iter().zip(want.iter()).zip([222, 222, 215]) {
                assert_eq!(&block(&mut d, h), w);
                assert_eq!(d.table_size(), size);
            }
            assert_eq!(d.table.len(), 3);
        }
    }

    /// After a loss, references to entries inserted since are exact, older ones are unknown,
    /// and the table is known again once the encoder must have evicted everything older.
    #[test]
    fn lost_table_recovers_from_new_insertions() {
        let mut d = Decoder::new();
        block(&mut d, C3[0]);
        d.lose();
        assert!(!d.known());
        // C.3 second block references index 62 (":authority: www.example.com"), now unknown
        let mut got = Vec::new();
        let info = d
            .decode(&hex(C3[1]), 1 << 20, &mut |n, v| {
                got.push((
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                ))
            })
            .unwrap();
        assert_eq!(info.unknown, 1);
        assert_eq!(got.len(), 4);
        // its own insertion (cache-control: no-cache) is index 62 now and exact
        assert_eq!(block(&mut d, "be"), pairs(&[("cache-control", "no-cache")]));
        d.max = 100;
        block(&mut d, "400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65");
        block(&mut d, "400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65");
        assert!(d.known());
    }

    #[test]
    fn malformed_blocks_are_errors_not_panics() {
        let mut d = Decoder::new();
        let mut sink = |_: &[u8], _: &[u8]| {};
        assert_eq!(d.decode(&[0x80], 100, &mut sink), Err(HpackError::ZeroIndex));
        assert_eq!(
            d.decode(&[0x40, 0x05, b'a'], 100, &mut sink),
            Err(HpackError::Truncated)
        );
        assert_eq!(
            d.decode(&[0x82, 0x3f, 0xe1, 0x1f], 100, &mut sink),
            Err(HpackError::LateSizeUpdate)
        );
        // Huffman string of all ones for 2 bytes: padding longer than 7 bits
        assert_eq!(
            d.decode(&[0x00, 0x81, b'a', 0x82, 0xff, 0xff], 100, &mut sink),
            Err(HpackError::Huffman)
        );
        for len in 0..40 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = Decoder::new().decode(&junk, 100, &mut sink);
        }
    }
}
