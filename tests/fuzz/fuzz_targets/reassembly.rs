//! Any sequence of segments (seq, length, flags) into one stream: delivered bytes never
//! overlap or go backwards, buffers stay within their caps, a flush empties them.
#![no_main]
use apitap::reassembly::{Budget, Chunk, ReassemblyConfig, ReassemblyStats, Stream};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cfg = ReassemblyConfig { max_ooo_per_stream: 8192, max_ooo_total: 8192, overlap_window: 64, reorder_packets: 4 };
    let (mut b, mut st) = (Budget::default(), ReassemblyStats::default());
    let mut s = Stream::default();
    s.init(u32::MAX - 100);
    let payload = [0xABu8; 2048];
    let mut delivered = 0u64;
    for (i, c) in data.chunks(7).enumerate() {
        if c.len() < 7 {
            break;
        }
        let seq = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) % 20_000;
        let len = u16::from_le_bytes([c[4], c[5]]) as usize % payload.len();
        let seq = (u32::MAX - 99).wrapping_add(seq);
        s.note_ack(Some(seq));
        s.segment(seq, &payload[..len], (c[6] & 3) as u32, c[6] & 0x80 != 0, i as u64, &cfg, &mut b, &mut st, &mut |ch| match ch {
            Chunk::Data(d) => delivered += d.len() as u64,
            Chunk::Gap(n) => delivered += n,
            Chunk::Ack(_) => {}
        });
        assert!(s.buffered() <= cfg.max_ooo_per_stream + payload.len());
        assert_eq!(delivered, s.offset());
    }
    s.flush(&mut b, &mut st, &mut |_| {});
    assert_eq!(b.used, 0);
});
