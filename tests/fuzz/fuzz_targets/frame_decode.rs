//! Any frames (first byte picks the link type) through decode, flow table, reassembly and
//! HTTP: never a panic, caps hold.
#![no_main]
use apitap::capture::Frame;
use apitap::decode::{DecodeConfig, Decoder};
use apitap::flow::{FlowConfig, FlowTable};
use apitap::http::HttpConfig;
use apitap::reassembly::ReassemblyConfig;
use libfuzzer_sys::fuzz_target;

const LINKTYPES: [u32; 9] = [1, 0, 101, 113, 276, 104, 239, 108, 228];

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new(DecodeConfig { frag_memory: 1 << 16, ..DecodeConfig::default() });
    let rcfg = ReassemblyConfig { max_ooo_per_stream: 4096, max_ooo_total: 16384, ..ReassemblyConfig::default() };
    let mut flows = FlowTable::new(FlowConfig { max_flows: 32, ..FlowConfig::default() }, rcfg, HttpConfig::default());
    let mut out = Vec::new();
    // frames are separated by the marker 0xFE 0xED; each starts with a link-type selector
    for (i, chunk) in data.split(|b| *b == 0xFE).enumerate() {
        let Some((&sel, body)) = chunk.split_first() else { continue };
        let fr = Frame { ts: i as u64 * 1_000_000, linktype: LINKTYPES[sel as usize % LINKTYPES.len()], data: body, orig_len: body.len() as u32 + (sel as u32 & 7) };
        d.decode(&fr, &mut |s| flows.process(s, &mut out));
        assert!(flows.active() <= 32);
        assert!(d.frags.memory() <= 1 << 16);
        out.clear();
    }
    flows.flush_all(u64::MAX / 4, &mut out);
    assert_eq!(flows.buffered_bytes(), 0);
});
