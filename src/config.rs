//! Validated configuration: every cap with its unit and default.
//!
//! The CLI fills this in (a TOML config file comes with the live sensor). Each layer takes its
//! own section: [`DecodeConfig`], [`ReassemblyConfig`], [`HttpConfig`], [`FlowConfig`].

use crate::decode::DecodeConfig;
use crate::flow::FlowConfig;
use crate::http::HttpConfig;
use crate::reassembly::ReassemblyConfig;

#[derive(Debug, Clone)]
pub struct Config {
    /// EVE `host`: the sensor's name. Default: the machine's host name.
    pub sensor_name: String,
    /// Where JSON lines go: a path, or `-` for stdout. Default `-`.
    pub output: String,
    /// Worker shards that format events. Default: cores - 1, at least 1.
    pub workers: usize,
    /// Include request and response headers (redacted) in `http` events. Default off.
    pub log_headers: bool,
    /// Seconds of packet time between `stats` events (0: only at exit). Default 60.
    pub stats_interval_s: u64,
    /// Key for the keyed hashes that stand in for secrets. Default: a fixed key; set your own.
    pub hash_key: Vec<u8>,
    /// Show a progress bar on a terminal. Default on.
    pub progress: bool,
    /// Print the stats summary to stderr at exit. Default on.
    pub summary: bool,
    /// `anomaly` events per decode-skip reason per run (counters stay exact). Default 100.
    pub max_decode_anomalies: u64,
    pub decode: DecodeConfig,
    pub flow: FlowConfig,
    pub reassembly: ReassemblyConfig,
    pub http: HttpConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sensor_name: hostname(),
            output: "-".into(),
            workers: default_workers(),
            log_headers: false,
            stats_interval_s: 60,
            hash_key: b"apitap-default-key: set hash_key in production".to_vec(),
            progress: true,
            summary: true,
            max_decode_anomalies: 100,
            decode: DecodeConfig::default(),
            flow: FlowConfig::default(),
            reassembly: ReassemblyConfig::default(),
            http: HttpConfig::default(),
        }
    }
}

pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1))
        .unwrap_or(1)
        .max(1)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "apitap".into())
}
