//! Validated configuration: every cap with its unit and default.
//!
//! The CLI fills this in (a TOML config file comes with the live sensor). Each layer takes its
//! own section: [`DecodeConfig`], [`ReassemblyConfig`], [`HttpConfig`], [`FlowConfig`].

use crate::decode::DecodeConfig;
use crate::flow::FlowConfig;
use crate::http::HttpConfig;
use crate::reassembly::ReassemblyConfig;

/// The `hash_key` when none is set: public, so it keys nothing (set one in production).
pub const DEFAULT_HASH_KEY: &[u8] = b"apitap-default-key: set hash_key in production";

#[derive(Debug, Clone)]
pub struct Config {
    /// EVE `host`: the sensor's name. Default: the machine's host name.
    pub sensor_name: String,
    /// Where JSON lines go: `-` (stdout), a path, `syslog+udp://H:P`, `syslog+tcp://H:P`;
    /// several at once. Default `["-"]`.
    pub sinks: Vec<String>,
    /// Batches queued per sink. Default 64.
    pub sink_queue: usize,
    /// Syslog facility number. Default 16 (local0).
    pub syslog_facility: u8,
    /// Log level of apitap's own logs (RUST_LOG overrides). Default `info`.
    pub log_level: String,
    /// Live: switch to this user (and its group) once the interfaces and outputs are open,
    /// dropping every privilege. Default: none (stay as started; under systemd the unit
    /// already runs unprivileged with only the capture capabilities).
    pub user: Option<String>,
    /// Live: serve Prometheus metrics at `http://ADDR/metrics` (`metrics.listen`). Default: off.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Write the forensic HTML report here when the run ends (`--report`). Default: none.
    pub report_path: Option<String>,
    /// Replay: only frames in this time range (nanoseconds). Default: all.
    pub since: Option<u64>,
    pub until: Option<u64>,
    /// What the report says it was made from (the capture files).
    pub report_sources: Vec<String>,
    pub capture: CaptureConfig,
    /// Profile transactions into the API catalog. Default on.
    pub profile: bool,
    /// Write the catalog (OpenAPI 3.1) here at every snapshot and at exit. Default: none.
    pub catalog_path: Option<String>,
    pub catalog: crate::catalog::CatalogConfig,
    /// A reference OpenAPI document: endpoints are marked documented, shadow or zombie.
    pub spec_path: Option<String>,
    /// Seconds between catalog snapshots (`endpoint` events, the catalog file); 0: only at
    /// exit. Default 300.
    pub snapshot_interval_s: u64,
    /// Emit `endpoint` events (first seen, snapshots). Default on.
    pub endpoint_events: bool,
    /// Run the rules and entity risk. Default on.
    pub rules_enabled: bool,
    /// A rule file added to the default pack (same id: replaces that rule). Default none.
    pub rules_file: Option<String>,
    /// The rule file replaces the default pack instead of adding to it. Default off.
    pub rules_replace: bool,
    pub engine: crate::engine::EngineConfig,
    /// When an unauthenticated 2xx is an auth bypass.
    pub bypass: crate::engine::BypassConfig,
    /// Worker shards that format events. Default: cores - 1, at least 1.
    pub workers: usize,
    /// Pin a replay's threads to CPUs (see [`crate::affinity`]). Default auto.
    pub pin_threads: crate::affinity::PinThreads,
    /// Include request and response headers (redacted) in `http` events. Default off.
    pub log_headers: bool,
    /// Event types written (`output.types`). Default all.
    pub event_types: crate::event::EventTypes,
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
    pub fleet: crate::fleet::FleetConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sensor_name: hostname(),
            sinks: vec!["-".into()],
            sink_queue: 64,
            syslog_facility: 16,
            log_level: "info".into(),
            user: None,
            metrics_listen: None,
            report_path: None,
            report_sources: Vec::new(),
            since: None,
            until: None,
            capture: CaptureConfig::default(),
            profile: true,
            catalog_path: None,
            catalog: crate::catalog::CatalogConfig::default(),
            spec_path: None,
            snapshot_interval_s: 300,
            endpoint_events: true,
            rules_enabled: true,
            rules_file: None,
            rules_replace: false,
            engine: crate::engine::EngineConfig::default(),
            bypass: crate::engine::BypassConfig::default(),
            workers: default_workers(),
            pin_threads: crate::affinity::PinThreads::Auto,
            log_headers: false,
            event_types: crate::event::EventTypes::all(),
            stats_interval_s: 60,
            hash_key: DEFAULT_HASH_KEY.to_vec(),
            progress: true,
            summary: true,
            max_decode_anomalies: 100,
            decode: DecodeConfig::default(),
            flow: FlowConfig::default(),
            reassembly: ReassemblyConfig::default(),
            http: HttpConfig::default(),
            fleet: crate::fleet::FleetConfig::default(),
        }
    }
}

/// Cores - 1: one core is the capture thread's. A process given one CPU (taskset, a cgroup
/// quota) gets 0: a replay then analyses on the capture thread, with no thread switch between
/// reading and analysis (live runs one worker).
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "apitap".into())
}

/// The commented default configuration printed by `apitap config default`. Every key is
/// optional; this text parses to exactly the built-in defaults (a test holds it to that).
pub const DEFAULT_TOML: &str = r#"# apitap configuration. Every key is optional; shown are the defaults.
# Command-line flags override what is set here.

# EVE "host" field: the sensor's name (default: the machine's host name).
# sensor_name = "sensor-1"
# Worker threads analysing transactions and formatting events (default: cores - 1).
# 0: a replay analyses on the capture thread (the default on one CPU); live runs one worker.
# workers = 1
# Pin a replay's capture thread and workers to CPUs: "auto" (when each can have a CPU of its
# own among those the process may use), "on", "off".
# pin_threads = "auto"
# Key of the keyed hashes that replace secrets (tokens, cookies, API keys) in the output.
# Set your own: the same key on every sensor makes principals comparable across sensors.
# hash_key = "change-me"
# Include request and response headers (redacted) in http events.
log_headers = false
# Seconds between stats events (packet time in a replay, wall time live; 0 = only at exit).
stats_interval = 60
# Log level for apitap's own logs on stderr (RUST_LOG overrides): error, warn, info, debug.
log_level = "info"
# Live: once the interfaces and outputs are open, become this user (started as root).
# user = "apitap"

[capture]
# Interfaces for `apitap live` (or -i on the command line).
interfaces = []
# BPF filter, e.g. "tcp port 80 or tcp port 8080" ("" = everything).
bpf = ""
# Bytes captured per packet.
snaplen = 65535
# Kernel capture buffer (libpcap): bytes, or a size with a unit ("128MiB", "1 GiB", "512KiB").
buffer_size = "128MiB"
promiscuous = true
# Deliver packets as they arrive instead of batching in the kernel.
immediate = true
# Packet batches queued between the interface readers and the flow thread.
queue = 1024
# Parsed transactions waiting for the workers, all workers together: bytes, or a size with a
# unit. A burst faster than the workers waits here; beyond it whole batches are dropped and
# counted (stats drops.worker_queue).
worker_queue = "128MiB"
# "pcap" (libpcap, one reader per interface, portable) or "af_packet" (Linux: `threads`
# TPACKET_V3 rings per interface in one PACKET_FANOUT hash group; each thread owns its flows).
method = "pcap"
# af_packet: capture threads per interface, each with its own ring, flows and HTTP state.
threads = 1
# af_packet: ring block size: bytes, or a size with a unit (B, KiB, MiB, GiB; KB, MB, GB are
# powers of ten), e.g. "1MiB", "4 MiB", 1048576. A power of two from 4KiB to 256MiB that holds
# one snaplen packet and its 128-byte header.
block_size = "1MiB"
# af_packet: blocks per ring (2 to 65536; block_size x block_count at most 4GiB per ring).
block_count = 64
# af_packet: how long before the kernel hands over a block that is not full: milliseconds, or
# a duration with a unit (ms, s, min), e.g. "10ms", "1s", 10. From 1ms to 10s.
block_timeout = "10ms"

[metrics]
# Live: serve Prometheus metrics (text format) at http://LISTEN/metrics, e.g. "127.0.0.1:9157"
# ("" = off). Counters come from the same numbers as the stats events.
listen = ""

[output]
# Where JSON lines go; several at once: "-" (stdout), "/path/eve.json" (appended, reopened on
# SIGHUP), "syslog+udp://127.0.0.1:514", "syslog+tcp://127.0.0.1:601" (RFC 5424, octet-counted).
sinks = ["-"]
# Event types written, as Suricata's eve-log types.
types = ["http", "alert", "anomaly", "endpoint", "entity", "stats", "tls"]
# Batches (of up to 256 events) queued per sink; live, a full queue drops and counts.
queue = 64
# Syslog facility number (16 = local0).
syslog_facility = 16

[decode]
# UDP destination ports decoded as VXLAN.
vxlan_ports = [4789]
# Memory for IP fragments awaiting reassembly (buffers and per-datagram bookkeeping), bytes.
frag_memory = 16777216
# Seconds before an incomplete fragmented datagram is dropped.
frag_timeout = 30

[flow]
# Most flows tracked at once (the least recently seen sixteenth is evicted when full).
max_flows = 262144
# Seconds without a packet before a flow is flushed and removed.
idle_timeout = 300
# Seconds a closed flow lingers to absorb retransmissions.
closed_timeout = 10
# Stream and HTTP anomaly events per flow (counters stay exact).
max_anomalies_per_flow = 32

[reassembly]
# Memory for out-of-order data per direction (payload plus 96 bytes per buffered segment)
# before the first hole is skipped.
max_ooo_per_stream = 262144
# The same over all flows.
max_ooo_total = 67108864
# Bytes remembered per direction to detect retransmissions with different data.
overlap_window = 256
# Packets to wait, once the peer acknowledged past a hole, before skipping it.
reorder_packets = 16
# TCP checksum validation: "yes" refuses segments with a bad checksum (the server never saw
# them), "no" never checks, "auto" watches the first 64 and validates unless one in ten is bad
# (a capture of offloaded checksums); it stops after 32 bad ones in a row, takes a checksum
# holding only the pseudo-header sum (offloaded by the capturing host) as good and leaves
# segments bigger than a 1500-byte frame (TSO/GRO super-segments) unchecked.
checksums = "auto"

[http]
# Body bytes inspected per message (after gzip/deflate decoding).
body_depth = 65536
# Longest request or response head, bytes (Apache takes 100 lines of 8190, Go 1 MiB); a longer
# head is reported truncated, with the headers that fit and a HEADER_TOO_LONG anomaly.
max_head = 65536
# Requests waiting for their responses per connection (their bytes are capped at 1 MiB too).
max_pending = 1024
# Decode gzip/deflate bodies for inspection.
decompress = true

[catalog]
# Profile endpoints (the API catalog; rules use its templates either way).
enabled = true
# Write the catalog as OpenAPI 3.1 here at every snapshot and at exit ("" = don't).
path = ""
# A reference OpenAPI document (JSON or YAML): endpoints seen but not in it are "shadow",
# deprecated ones still called are "zombie" ("" = none).
spec = ""
# Seconds between snapshots (endpoint events and the catalog file; 0 = only at exit).
snapshot_interval = 300
# endpoint events: when an endpoint is first seen answering, and at every snapshot.
endpoint_events = true
max_hosts = 256
# More endpoints on one host fold into one overflow endpoint.
max_endpoints_per_host = 2000
# Query and body parameter names kept per endpoint.
max_params = 64
# Distinct values at one path position before it is learned as a {param}.
learn_threshold = 20

[detectors]
# rate_abuse: requests per rate_bucket seconds above rate_floor AND rate_factor times both the
# peers' p90 (buckets that did not alert) and the client's own mean.
rate_bucket = 10
rate_floor = 100
rate_factor = 5.0
# error_spike / latency_anomaly per endpoint, in endpoint_bucket windows of at least min_calls
# calls, once learn_buckets windows made a baseline: errors (5xx, 4xx but 401/403/404/405/429)
# above error_floor and error_factor x baseline; p95 above latency_floor_ms and latency_factor x.
endpoint_bucket = 60
min_calls = 20
learn_buckets = 3
error_floor = 0.25
error_factor = 3.0
latency_floor_ms = 250.0
latency_factor = 4.0
# data_exposure by volume: response bytes per volume_bucket seconds above volume_floor AND
# volume_factor times the peers' p90 and the client's own mean.
volume_bucket = 60
volume_floor = 8388608
volume_factor = 10.0
# auth_bypass: a 2xx without credentials on an endpoint that saw auth_bypass_min_calls calls with
# credentials and whose clients used credentials (at least auth_bypass_share of them; one client
# without is tolerated, the one being caught).
auth_bypass_min_calls = 10
auth_bypass_share = 0.9
# The site's own origins (e.g. ["https://shop.example.com", "10.77.0.10"]): a URL naming one of
# them in a parameter, Referer or Origin is a link, not an SSRF target. The request's Host and
# the server's address and port are always the site's own.
site_origins = []

[rules]
# Run the rule engine and entity risk.
enabled = true
# A rule file added to the built-in pack (a rule with a built-in id replaces it); SIGHUP
# reloads it ("" = only the built-in pack; see `apitap rules default`).
file = ""
# The file replaces the built-in pack instead of adding to it.
replace_defaults = false
# Proxies (addresses or CIDR blocks) whose X-Forwarded-For / Forwarded header names the client.
trusted_proxies = []
# (rule, entity) window states per worker; the longest idle sixteenth goes when full.
max_states = 200000

[entity]
# Entities (addresses, principals, ...) tracked per worker; the least risky, longest idle
# sixteenth goes when full.
max_entities = 100000
# Seconds for an entity's risk to halve.
half_life = 900
# Risk levels that raise a risk_threshold alert and an entity event.
thresholds = [50, 100, 200]
# Failed authentications followed by a success within takeover_window: account takeover.
takeover_failures = 5
takeover_window = 600
takeover_risk = 50

[fleet]
# Share state with the other sensors through Redis: rule windows (distinct counts and hit
# counts), entity risk with its decay, one alert per episode fleet-wide, the sensors that saw
# the entity (in alerts and entity events). Redis down: local state, counted
# (stats.fleet.unavailable), retried with backoff. A bad URL: `config check` names it, exit 2.
# One Redis: a URL (redis://[:PASSWORD@]HOST:PORT[/DB]). A Redis Cluster: a list of seed node
# URLs (database 0 only; the client finds the other nodes). Every URL is checked at start.
# redis = "redis://127.0.0.1:6379"
# redis = ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000", "redis://10.0.0.3:7000"]
# Hits and alerts queued for the fleet thread (live: a full queue is counted, not waited for).
queue = 4096
# Prefix of every Redis key (no braces: keys carry a cluster hash tag after it).
prefix = "apitap"
"#;

use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    sensor_name: Option<String>,
    workers: Option<usize>,
    pin_threads: Option<String>,
    hash_key: Option<String>,
    log_headers: Option<bool>,
    stats_interval: Option<u64>,
    log_level: Option<String>,
    user: Option<String>,
    capture: Option<CaptureSection>,
    metrics: Option<MetricsSection>,
    output: Option<OutputSection>,
    decode: Option<DecodeSection>,
    flow: Option<FlowSection>,
    reassembly: Option<ReassemblySection>,
    http: Option<HttpSection>,
    catalog: Option<CatalogSection>,
    detectors: Option<DetectorsSection>,
    rules: Option<RulesSection>,
    entity: Option<EntitySection>,
    fleet: Option<FleetSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetSection {
    /// a URL (standalone) or an array of URLs (Redis Cluster nodes)
    redis: Option<toml::Value>,
    queue: Option<usize>,
    prefix: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogSection {
    enabled: Option<bool>,
    path: Option<String>,
    spec: Option<String>,
    snapshot_interval: Option<u64>,
    endpoint_events: Option<bool>,
    max_hosts: Option<usize>,
    max_endpoints_per_host: Option<usize>,
    max_params: Option<usize>,
    learn_threshold: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DetectorsSection {
    rate_bucket: Option<u64>,
    rate_floor: Option<u64>,
    rate_factor: Option<f64>,
    endpoint_bucket: Option<u64>,
    min_calls: Option<u64>,
    learn_buckets: Option<u32>,
    error_floor: Option<f64>,
    error_factor: Option<f64>,
    latency_floor_ms: Option<f64>,
    latency_factor: Option<f64>,
    volume_bucket: Option<u64>,
    volume_floor: Option<u64>,
    volume_factor: Option<f64>,
    auth_bypass_min_calls: Option<u64>,
    auth_bypass_share: Option<f64>,
    site_origins: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesSection {
    enabled: Option<bool>,
    file: Option<String>,
    replace_defaults: Option<bool>,
    trusted_proxies: Option<Vec<String>>,
    max_states: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntitySection {
    max_entities: Option<usize>,
    half_life: Option<f64>,
    thresholds: Option<Vec<f64>>,
    takeover_failures: Option<u32>,
    takeover_window: Option<u64>,
    takeover_risk: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureSection {
    method: Option<String>,
    threads: Option<usize>,
    /// Sizes and durations: an integer in the base unit or a string with a unit.
    block_size: Option<toml::Value>,
    block_count: Option<u32>,
    block_timeout: Option<toml::Value>,
    interfaces: Option<Vec<String>>,
    bpf: Option<String>,
    snaplen: Option<u32>,
    buffer_size: Option<toml::Value>,
    promiscuous: Option<bool>,
    immediate: Option<bool>,
    queue: Option<usize>,
    worker_queue: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsSection {
    listen: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputSection {
    sinks: Option<Vec<String>>,
    types: Option<Vec<String>>,
    queue: Option<usize>,
    syslog_facility: Option<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecodeSection {
    vxlan_ports: Option<Vec<u16>>,
    frag_memory: Option<usize>,
    frag_timeout: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowSection {
    max_flows: Option<usize>,
    idle_timeout: Option<u64>,
    closed_timeout: Option<u64>,
    max_anomalies_per_flow: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReassemblySection {
    max_ooo_per_stream: Option<usize>,
    max_ooo_total: Option<usize>,
    overlap_window: Option<usize>,
    reorder_packets: Option<u64>,
    checksums: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSection {
    body_depth: Option<usize>,
    max_head: Option<usize>,
    max_pending: Option<usize>,
    decompress: Option<bool>,
}

/// Live capture settings.
impl Config {
    /// The rules this configuration runs: the built-in pack, plus or instead of the file.
    pub fn load_rules(&self) -> Result<crate::rules::RuleSet, crate::rules::RuleError> {
        let base = if self.rules_replace && self.rules_file.is_some() {
            crate::rules::RuleSet::default()
        } else {
            crate::rules::RuleSet::parse("<default rules>", crate::rules::DEFAULT_RULES)?
        };
        match &self.rules_file {
            Some(p) => base.extend(crate::rules::RuleSet::from_file(p)?, p),
            None => Ok(base),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureConfig {
    pub interfaces: Vec<String>,
    pub bpf: String,
    /// Bytes captured per packet. Default 65535.
    pub snaplen: u32,
    /// Kernel capture buffer, bytes. Default 128 MiB (zero drops at 300k packets/s here).
    pub buffer_size: u32,
    pub promiscuous: bool,
    pub immediate: bool,
    /// Packet batches queued between interface readers and the flow thread. Default 1024.
    pub queue: usize,
    /// Bytes of parsed events waiting for the workers, all workers together. Default 128 MiB.
    pub worker_queue: usize,
    /// libpcap (default) or AF_PACKET rings with fanout.
    pub method: CaptureMethod,
    /// af_packet: capture threads (rings) per interface. Default 1.
    pub threads: usize,
    /// af_packet ring: block size in bytes (default 1 MiB), blocks (default 64), and the
    /// milliseconds before a block that is not full is handed over (default 10).
    pub block_size: u32,
    pub block_count: u32,
    pub block_timeout_ms: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CaptureMethod {
    #[default]
    Pcap,
    AfPacket,
}

impl CaptureConfig {
    pub fn ring(&self) -> crate::capture::afpacket::RingConfig {
        crate::capture::afpacket::RingConfig {
            block_size: self.block_size,
            block_count: self.block_count,
            block_timeout_ms: self.block_timeout_ms,
            snaplen: self.snaplen,
            promiscuous: self.promiscuous,
        }
    }
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            interfaces: Vec::new(),
            bpf: String::new(),
            snaplen: 65535,
            buffer_size: 128 << 20,
            promiscuous: true,
            immediate: true,
            queue: 1024,
            worker_queue: 128 << 20,
            method: CaptureMethod::Pcap,
            threads: 1,
            block_size: 1 << 20,
            block_count: 64,
            block_timeout_ms: 10,
        }
    }
}

const SEC: u64 = 1_000_000_000;
/// Records at most in a table of entities or windows (their indexes are 32-bit).
const MAX_TABLE: usize = 1_000_000_000;

/// Units of a size, in bytes: binary (KiB = 1024) and decimal (KB = 1000), any case.
pub const SIZE_UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
];

/// Units of a duration, in milliseconds.
pub const MS_UNITS: &[(&str, u64)] = &[("ms", 1), ("s", 1_000), ("min", 60_000)];

/// A quantity with a unit from `units` (`"4 MiB"`, `"1.5s"`, `"10ms"`), in the base unit
/// (the unit worth 1). A bare number is in the base unit; a fraction must come out whole
/// (`"1.5KiB"` is 1536 bytes, `"0.5B"` is an error). Errors say what was wrong, not where.
pub fn parse_quantity(text: &str, units: &[(&str, u64)]) -> Result<u64, String> {
    let t = text.trim();
    let num_end = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = (&t[..num_end], t[num_end..].trim());
    let names = || units.iter().map(|u| u.0).collect::<Vec<_>>().join(", ");
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') || frac.len() > 9 {
        return Err(format!("{text:?} is not a number with a unit ({})", names()));
    }
    let mult = if unit.is_empty() {
        1
    } else {
        units
            .iter()
            .find(|u| u.0.eq_ignore_ascii_case(unit))
            .map(|u| u.1)
            .ok_or_else(|| format!("{text:?}: unknown unit {unit:?} (use {})", names()))?
    };
    let too_big = || format!("{text:?} is too large");
    let whole: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| too_big())?
    };
    let scale = 10u128.pow(frac.len() as u32);
    let f: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| too_big())?
    };
    let part = f * mult as u128;
    if !part.is_multiple_of(scale) {
        return Err(format!("{text:?} is not a whole number of {}", units[0].0));
    }
    let v = whole as u128 * mult as u128 + part / scale;
    u64::try_from(v).map_err(|_| too_big())
}

/// A TOML size or duration value: an integer in the base unit, or a string with a unit.
fn quantity(v: &toml::Value, units: &[(&str, u64)]) -> Result<u64, String> {
    match v {
        toml::Value::Integer(n) => u64::try_from(*n).map_err(|_| format!("{n} is negative")),
        toml::Value::String(s) => parse_quantity(s, units),
        _ => Err(format!(
            "must be an integer ({}) or a string with a unit, e.g. \"{}\"",
            units[0].0,
            if units[0].0 == "B" { "4MiB" } else { "10ms" }
        )),
    }
}

/// A metrics listen address: `HOST:PORT` with an IP address (`127.0.0.1:9157`, `[::1]:9157`).
pub fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    s.parse::<std::net::SocketAddr>()
        .map_err(|_| format!("{s:?} is not IP:PORT (e.g. 127.0.0.1:9157)"))
}

/// A configuration error: which file, where, what.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Read a TOML file over the defaults. Unknown keys and bad values are errors that name
    /// the file, the line and the key.
    pub fn from_file(path: &str) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError(format!("{path}: cannot read: {e}")))?;
        Config::from_toml(path, &text)
    }

    pub fn from_toml(path: &str, text: &str) -> Result<Config, ConfigError> {
        let f: FileConfig = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let msg = e.message().trim().replace('\n', " ");
            match line {
                Some(l) => ConfigError(format!("{path}: line {l}: {msg}")),
                None => ConfigError(format!("{path}: {msg}")),
            }
        })?;
        let mut c = Config::default();
        let bad = |key: &str, why: &str| ConfigError(format!("{path}: {key}: {why}"));
        if let Some(v) = f.sensor_name {
            c.sensor_name = v;
        }
        if let Some(v) = f.workers {
            if v > 256 {
                return Err(bad("workers", "must be 0 to 256"));
            }
            c.workers = v;
        }
        if let Some(v) = f.pin_threads {
            c.pin_threads = v.parse().map_err(|e: String| bad("pin_threads", &e))?;
        }
        if let Some(v) = f.hash_key {
            if v.is_empty() {
                return Err(bad("hash_key", "must not be empty"));
            }
            c.hash_key = v.into_bytes();
        }
        if let Some(v) = f.log_headers {
            c.log_headers = v;
        }
        if let Some(v) = f.stats_interval {
            if v > 366 * 86_400 {
                return Err(bad("stats_interval", "at most a year (0 = only at exit)"));
            }
            c.stats_interval_s = v;
        }
        if let Some(v) = f.log_level {
            if !["error", "warn", "info", "debug", "trace"].contains(&v.as_str()) {
                return Err(bad("log_level", "must be error, warn, info, debug or trace"));
            }
            c.log_level = v;
        }
        if let Some(v) = f.user {
            if v.is_empty() {
                return Err(bad("user", "must not be empty"));
            }
            c.user = Some(v);
        }
        if let Some(s) = f.capture {
            let cc = &mut c.capture;
            if let Some(v) = s.interfaces {
                cc.interfaces = v;
            }
            if let Some(v) = s.bpf {
                cc.bpf = v;
            }
            if let Some(v) = s.snaplen {
                if !(64..=262_144).contains(&v) {
                    return Err(bad("capture.snaplen", "must be 64 to 262144"));
                }
                cc.snaplen = v;
            }
            if let Some(v) = s.buffer_size {
                let b = quantity(&v, SIZE_UNITS).map_err(|e| bad("capture.buffer_size", &e))?;
                cc.buffer_size = u32::try_from(b)
                    .ok()
                    .filter(|b| *b > 0)
                    .ok_or_else(|| bad("capture.buffer_size", "must be 1 byte to 4GiB - 1"))?;
            }
            if let Some(v) = s.promiscuous {
                cc.promiscuous = v;
            }
            if let Some(v) = s.immediate {
                cc.immediate = v;
            }
            if let Some(v) = s.queue {
                cc.queue = v.max(1);
            }
            if let Some(v) = s.worker_queue {
                let b = quantity(&v, SIZE_UNITS).map_err(|e| bad("capture.worker_queue", &e))?;
                cc.worker_queue = usize::try_from(b)
                    .ok()
                    .filter(|b| (1 << 20..=1 << 40).contains(b))
                    .ok_or_else(|| bad("capture.worker_queue", "must be 1MiB to 1TiB"))?;
            }
            if let Some(v) = s.method {
                cc.method = match v.as_str() {
                    "pcap" | "libpcap" => CaptureMethod::Pcap,
                    "af_packet" => CaptureMethod::AfPacket,
                    _ => return Err(bad("capture.method", "must be \"pcap\" or \"af_packet\"")),
                };
            }
            if let Some(v) = s.threads {
                if !(1..=64).contains(&v) {
                    return Err(bad("capture.threads", "must be 1 to 64"));
                }
                cc.threads = v;
            }
            let ring_keys = s.block_size.is_some() || s.block_count.is_some() || s.block_timeout.is_some();
            if let Some(v) = s.block_size {
                let b = quantity(&v, SIZE_UNITS).map_err(|e| bad("capture.block_size", &e))?;
                crate::capture::afpacket::check_block_size(b, cc.snaplen)
                    .map_err(|e| ConfigError(format!("{path}: {e}")))?;
                cc.block_size = b as u32;
            }
            if let Some(v) = s.block_count {
                cc.block_count = v;
            }
            if let Some(v) = s.block_timeout {
                let t = quantity(&v, MS_UNITS).map_err(|e| bad("capture.block_timeout", &e))?;
                // Beyond u32: saturated, still out of range for the ring check below.
                cc.block_timeout_ms = u32::try_from(t).unwrap_or(u32::MAX);
            }
            // Checked when set even with libpcap: `--method af_packet` may select them later.
            if cc.method == CaptureMethod::AfPacket || ring_keys {
                crate::capture::afpacket::check(&cc.ring()).map_err(|e| ConfigError(format!("{path}: {e}")))?;
            }
        }
        if let Some(v) = f.metrics.and_then(|m| m.listen)
            && !v.is_empty()
        {
            c.metrics_listen = Some(parse_listen(&v).map_err(|e| bad("metrics.listen", &e))?);
        }
        if let Some(s) = f.output {
            if let Some(v) = s.sinks {
                if v.is_empty() {
                    return Err(bad("output.sinks", "needs at least one sink"));
                }
                for x in &v {
                    x.parse::<crate::sink::SinkSpec>()
                        .map_err(|e| bad("output.sinks", &e))?;
                }
                c.sinks = v;
            }
            if let Some(v) = s.types {
                c.event_types = crate::event::EventTypes::parse(&v).map_err(|e| bad("output.types", &e))?;
            }
            if let Some(v) = s.queue {
                c.sink_queue = v.max(1);
            }
            if let Some(v) = s.syslog_facility {
                if v > 23 {
                    return Err(bad("output.syslog_facility", "must be 0 to 23"));
                }
                c.syslog_facility = v;
            }
        }
        if let Some(s) = f.decode {
            if let Some(v) = s.vxlan_ports {
                c.decode.vxlan_ports = v;
            }
            if let Some(v) = s.frag_memory {
                c.decode.frag_memory = v;
            }
            if let Some(v) = s.frag_timeout {
                c.decode.frag_timeout = v * SEC;
            }
        }
        if let Some(s) = f.flow {
            if let Some(v) = s.max_flows {
                if v < 16 {
                    return Err(bad("flow.max_flows", "must be at least 16"));
                }
                c.flow.max_flows = v;
            }
            if let Some(v) = s.idle_timeout {
                c.flow.idle_timeout = v * SEC;
            }
            if let Some(v) = s.closed_timeout {
                c.flow.closed_timeout = v * SEC;
            }
            if let Some(v) = s.max_anomalies_per_flow {
                c.flow.max_anomalies_per_flow = v;
            }
        }
        if let Some(s) = f.reassembly {
            let r = &mut c.reassembly;
            if let Some(v) = s.max_ooo_per_stream {
                r.max_ooo_per_stream = v;
            }
            if let Some(v) = s.max_ooo_total {
                r.max_ooo_total = v;
            }
            if let Some(v) = s.overlap_window {
                r.overlap_window = v;
            }
            if let Some(v) = s.reorder_packets {
                r.reorder_packets = v;
            }
            if let Some(v) = s.checksums {
                c.decode.checksums = crate::decode::ChecksumMode::parse(&v)
                    .ok_or_else(|| bad("reassembly.checksums", "must be \"auto\", \"yes\" or \"no\""))?;
            }
        }
        if let Some(s) = f.http {
            let h = &mut c.http;
            if let Some(v) = s.body_depth {
                h.body_depth = v;
            }
            if let Some(v) = s.max_head {
                if v < 256 {
                    return Err(bad("http.max_head", "must be at least 256"));
                }
                h.max_head = v;
            }
            if let Some(v) = s.max_pending {
                h.max_pending = v.max(1);
            }
            if let Some(v) = s.decompress {
                h.decompress = v;
            }
        }
        if let Some(s) = f.catalog {
            let k = &mut c.catalog;
            if let Some(v) = s.enabled {
                c.profile = v;
            }
            if let Some(v) = s.path {
                c.catalog_path = (!v.is_empty()).then_some(v);
            }
            if let Some(v) = s.spec {
                c.spec_path = (!v.is_empty()).then_some(v);
            }
            if let Some(v) = s.snapshot_interval {
                if v > 366 * 86_400 {
                    return Err(bad("catalog.snapshot_interval", "at most a year (0 = only at exit)"));
                }
                c.snapshot_interval_s = v;
            }
            if let Some(v) = s.endpoint_events {
                c.endpoint_events = v;
            }
            let positive = |key: &str, v: usize| {
                if v == 0 {
                    Err(bad(key, "must be at least 1"))
                } else {
                    Ok(v)
                }
            };
            if let Some(v) = s.max_hosts {
                k.max_hosts = positive("catalog.max_hosts", v)?;
            }
            if let Some(v) = s.max_endpoints_per_host {
                k.max_endpoints_per_host = positive("catalog.max_endpoints_per_host", v)?;
            }
            if let Some(v) = s.max_params {
                k.max_params = positive("catalog.max_params", v)?;
            }
            if let Some(v) = s.learn_threshold {
                k.learn_threshold = positive("catalog.learn_threshold", v)?;
            }
        }
        if let Some(s) = f.detectors {
            let b = &mut c.engine.baseline;
            let pos = |key: &str, v: f64| {
                if v > 0.0 && v.is_finite() {
                    Ok(v)
                } else {
                    Err(bad(key, "must be more than 0"))
                }
            };
            if let Some(v) = s.rate_bucket {
                b.rate_bucket_s = pos("detectors.rate_bucket", v as f64)? as u64;
            }
            if let Some(v) = s.rate_floor {
                b.rate_floor = v;
            }
            if let Some(v) = s.rate_factor {
                b.rate_factor = pos("detectors.rate_factor", v)?;
            }
            if let Some(v) = s.endpoint_bucket {
                b.endpoint_bucket_s = pos("detectors.endpoint_bucket", v as f64)? as u64;
            }
            if let Some(v) = s.min_calls {
                b.min_calls = v.max(1);
            }
            if let Some(v) = s.learn_buckets {
                b.learn_buckets = v;
            }
            if let Some(v) = s.error_floor {
                b.error_floor = pos("detectors.error_floor", v)?;
            }
            if let Some(v) = s.error_factor {
                b.error_factor = pos("detectors.error_factor", v)?;
            }
            if let Some(v) = s.latency_floor_ms {
                b.latency_floor_ms = pos("detectors.latency_floor_ms", v)?;
            }
            if let Some(v) = s.latency_factor {
                b.latency_factor = pos("detectors.latency_factor", v)?;
            }
            if let Some(v) = s.volume_bucket {
                b.volume_bucket_s = pos("detectors.volume_bucket", v as f64)? as u64;
            }
            if let Some(v) = s.volume_floor {
                b.volume_floor = v;
            }
            if let Some(v) = s.volume_factor {
                b.volume_factor = pos("detectors.volume_factor", v)?;
            }
            if let Some(v) = s.site_origins {
                if let Some(bad_o) = v
                    .iter()
                    .find(|o| o.trim().is_empty() || o.contains(char::is_whitespace))
                {
                    return Err(bad(
                        "detectors.site_origins",
                        &format!("{bad_o:?} is not an origin (scheme://host[:port] or a host)"),
                    ));
                }
                c.engine.site_origins = v;
            }
            if let Some(v) = s.auth_bypass_min_calls {
                c.bypass.min_calls = v.max(1);
            }
            if let Some(v) = s.auth_bypass_share {
                if !(0.0..=1.0).contains(&v) {
                    return Err(bad("detectors.auth_bypass_share", "must be 0 to 1"));
                }
                c.bypass.share = v;
            }
        }
        if let Some(s) = f.rules {
            if let Some(v) = s.enabled {
                c.rules_enabled = v;
            }
            if let Some(v) = s.file {
                c.rules_file = (!v.is_empty()).then_some(v);
            }
            if let Some(v) = s.replace_defaults {
                c.rules_replace = v;
            }
            if let Some(v) = s.trusted_proxies {
                c.engine.trusted_proxies = v
                    .iter()
                    .map(|p| {
                        crate::engine::Cidr::parse(p).ok_or_else(|| {
                            bad(
                                "rules.trusted_proxies",
                                &format!("{p:?} is not an address or CIDR block"),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?;
            }
            if let Some(v) = s.max_states {
                // the window table indexes its records with 32 bits
                if v > MAX_TABLE {
                    return Err(bad("rules.max_states", "must be at most 1000000000"));
                }
                c.engine.max_states = v.max(16);
            }
        }
        if let Some(s) = f.entity {
            let e = &mut c.engine.entity;
            if let Some(v) = s.max_entities {
                if v > MAX_TABLE {
                    return Err(bad("entity.max_entities", "must be at most 1000000000"));
                }
                e.max_entities = v.max(16);
            }
            if let Some(v) = s.half_life {
                if !(v > 0.0 && v.is_finite()) {
                    return Err(bad("entity.half_life", "must be more than 0 seconds"));
                }
                e.half_life_s = v;
            }
            if let Some(v) = s.thresholds {
                if v.is_empty() || v.iter().any(|x| !x.is_finite()) || v.windows(2).any(|w| w[0] >= w[1]) || v[0] <= 0.0
                {
                    return Err(bad("entity.thresholds", "must be positive and increasing"));
                }
                e.thresholds = v;
            }
            if let Some(v) = s.takeover_failures {
                e.takeover_failures = v;
            }
            if let Some(v) = s.takeover_window {
                e.takeover_window_s = v;
            }
            if let Some(v) = s.takeover_risk {
                if !(v >= 0.0 && v.is_finite()) {
                    return Err(bad("entity.takeover_risk", "must be 0 or more"));
                }
                e.takeover_risk = v;
            }
        }
        if let Some(s) = f.fleet {
            if let Some(v) = s.redis {
                let t = match v {
                    toml::Value::String(u) => crate::fleet::Target::Standalone(u),
                    toml::Value::Array(a) => crate::fleet::Target::Cluster(
                        a.into_iter()
                            .map(|u| match u {
                                toml::Value::String(u) => Ok(u),
                                _ => Err(bad("fleet.redis", "a cluster is a list of redis://HOST:PORT strings")),
                            })
                            .collect::<Result<_, _>>()?,
                    ),
                    _ => {
                        return Err(bad(
                            "fleet.redis",
                            "must be a redis://HOST:PORT URL or a list of cluster node URLs",
                        ));
                    }
                };
                t.check().map_err(|e| bad("fleet.redis", &e))?;
                c.fleet.redis = Some(t);
                c.engine.fleet = true;
            }
            if let Some(v) = s.queue {
                if v == 0 {
                    return Err(bad("fleet.queue", "must be at least 1"));
                }
                c.fleet.queue = v;
            }
            if let Some(v) = s.prefix {
                // no braces: the keys' hash tag (`PREFIX:{HASH}:...`) must be the first `{...}`
                if v.is_empty() || v.len() > 64 || !v.bytes().all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}') {
                    return Err(bad("fleet.prefix", "must be 1 to 64 printable characters, no braces"));
                }
                c.fleet.prefix = v;
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_text_parses_to_the_defaults() {
        let c = Config::from_toml("default", DEFAULT_TOML).unwrap();
        let d = Config::default();
        assert_eq!(format!("{:?}", c), format!("{:?}", d));
    }

    #[test]
    fn unknown_keys_and_bad_values_name_file_line_and_key() {
        let e = Config::from_toml("a.toml", "log_headers = true\n[flow]\nmax_flow = 3\n")
            .err()
            .unwrap();
        assert!(e.0.starts_with("a.toml: line 3: unknown field `max_flow`"), "{}", e.0);
        let e = Config::from_toml("a.toml", "[output]\nsinks = [\"kafka://x:1\"]\n")
            .err()
            .unwrap();
        assert!(e.0.contains("output.sinks") && e.0.contains("kafka"), "{}", e.0);
        let e = Config::from_toml("a.toml", "workers = \"two\"\n").err().unwrap();
        assert!(e.0.starts_with("a.toml: line 1:"), "{}", e.0);
        let c = Config::from_toml("a.toml", "[flow]\nidle_timeout = 5\n[http]\nbody_depth = 10\n").unwrap();
        assert_eq!((c.flow.idle_timeout, c.http.body_depth), (5 * SEC, 10));
        let c = Config::from_toml("a.toml", "pin_threads = \"off\"\n").unwrap();
        assert_eq!(c.pin_threads, crate::affinity::PinThreads::Off);
        let e = Config::from_toml("a.toml", "pin_threads = \"yes\"\n").err().unwrap();
        assert!(
            e.0.contains("pin_threads") && e.0.contains("auto, on or off"),
            "{}",
            e.0
        );
    }

    /// `workers = 0` asks a replay to analyse on the capture thread; past 256 is refused.
    #[test]
    fn workers_zero_is_taken_and_past_256_refused() {
        assert_eq!(Config::from_toml("a.toml", "workers = 0\n").unwrap().workers, 0);
        assert_eq!(Config::from_toml("a.toml", "workers = 256\n").unwrap().workers, 256);
        let e = Config::from_toml("a.toml", "workers = 257\n").err().unwrap();
        assert!(e.0.contains("workers: must be 0 to 256"), "{}", e.0);
    }

    #[test]
    fn table_caps_past_32_bit_indexes_are_refused() {
        for (text, key) in [
            ("[rules]\nmax_states = 5000000000\n", "rules.max_states"),
            ("[entity]\nmax_entities = 5000000000\n", "entity.max_entities"),
        ] {
            let e = Config::from_toml("a.toml", text).err().unwrap();
            assert!(e.0.contains(key) && e.0.contains("at most"), "{}", e.0);
        }
        let c = Config::from_toml("a.toml", "[rules]\nmax_states = 3\n[entity]\nmax_entities = 1000000\n").unwrap();
        assert_eq!((c.engine.max_states, c.engine.entity.max_entities), (16, 1_000_000));
    }

    #[test]
    fn reassembly_checksums_key_takes_auto_yes_or_no() {
        use crate::decode::ChecksumMode;
        let c = Config::from_toml("a.toml", "[reassembly]\nchecksums = \"yes\"\n").unwrap();
        assert_eq!(c.decode.checksums, ChecksumMode::Yes);
        let c = Config::from_toml("a.toml", "[reassembly]\nchecksums = \"no\"\n").unwrap();
        assert_eq!(c.decode.checksums, ChecksumMode::No);
        assert_eq!(Config::default().decode.checksums, ChecksumMode::Auto);
        let e = Config::from_toml("a.toml", "[reassembly]\nchecksums = \"sometimes\"\n")
            .err()
            .unwrap();
        assert!(e.0.contains("reassembly.checksums"), "{}", e.0);
    }

    #[test]
    fn sizes_and_durations_take_units() {
        let sz = |t: &str| parse_quantity(t, SIZE_UNITS);
        assert_eq!(sz("1MiB"), Ok(1 << 20));
        assert_eq!(sz("4 MiB"), Ok(4 << 20));
        assert_eq!(sz("256kib"), Ok(256 << 10));
        assert_eq!(sz("1.5KiB"), Ok(1536));
        assert_eq!(sz("2GB"), Ok(2_000_000_000));
        assert_eq!(sz("4096"), Ok(4096));
        assert_eq!(sz(" 64 B "), Ok(64));
        assert!(sz("4 MB/s").unwrap_err().contains("unknown unit \"MB/s\""));
        assert!(sz("MiB").unwrap_err().contains("not a number"));
        assert!(sz("-1MiB").unwrap_err().contains("not a number"));
        assert!(sz("1.2.3MiB").is_err());
        assert!(sz("0.5B").unwrap_err().contains("whole number of B"));
        assert!(sz("99999999999999999999").unwrap_err().contains("too large"));
        assert!(sz("20000000000GiB").unwrap_err().contains("too large"));
        let ms = |t: &str| parse_quantity(t, MS_UNITS);
        assert_eq!(ms("10ms"), Ok(10));
        assert_eq!(ms("1s"), Ok(1000));
        assert_eq!(ms("1.5 s"), Ok(1500));
        assert_eq!(ms("2min"), Ok(120_000));
        assert_eq!(ms("25"), Ok(25));
        assert!(ms("1h").unwrap_err().contains("use ms, s, min"));
        assert!(ms("0.5ms").is_err());
    }

    #[test]
    fn worker_queue_budget_takes_a_size_and_refuses_a_tiny_or_bad_one() {
        assert_eq!(Config::default().capture.worker_queue, 128 << 20);
        let c = Config::from_toml("a.toml", "[capture]\nworker_queue = \"512 MiB\"\n").unwrap();
        assert_eq!(c.capture.worker_queue, 512 << 20);
        let c = Config::from_toml("a.toml", "[capture]\nworker_queue = 2097152\n").unwrap();
        assert_eq!(c.capture.worker_queue, 2 << 20);
        for bad in ["\"1KiB\"", "0", "\"lots\"", "-5"] {
            let e = Config::from_toml("a.toml", &format!("[capture]\nworker_queue = {bad}\n"))
                .err()
                .unwrap();
            assert!(e.0.contains("capture.worker_queue"), "{bad}: {}", e.0);
        }
    }

    #[test]
    fn ring_settings_take_units_and_bad_ones_name_the_key() {
        let c = Config::from_toml(
            "a.toml",
            "[capture]\nmethod = \"af_packet\"\nblock_size = \"4 MiB\"\nblock_timeout = \"1s\"\nbuffer_size = \"64MiB\"\n",
        )
        .unwrap();
        assert_eq!(
            (c.capture.block_size, c.capture.block_timeout_ms, c.capture.buffer_size),
            (4 << 20, 1000, 64 << 20)
        );
        let c = Config::from_toml("a.toml", "[capture]\nblock_size = 2097152\nblock_timeout = 50\n").unwrap();
        assert_eq!((c.capture.block_size, c.capture.block_timeout_ms), (2 << 20, 50));
        let d = Config::default().capture;
        assert_eq!((d.block_size, d.block_count, d.block_timeout_ms), (1 << 20, 64, 10));
        for (body, want) in [
            (
                "block_size = \"1 MB\"",
                "capture.block_size: 1000000B is not a power of two",
            ),
            (
                "block_size = \"1 furlong\"",
                "capture.block_size: \"1 furlong\": unknown unit",
            ),
            ("block_size = 0", "capture.block_size: must be more than 0"),
            ("block_size = \"8GiB\"", "capture.block_size: 8GiB is too large"),
            ("block_size = \"999GiB\"", "capture.block_size: 999GiB is too large"),
            ("block_size = \"32KiB\"", "cannot hold a 65535-byte packet"),
            ("block_size = -4096", "capture.block_size: -4096 is negative"),
            (
                "block_size = 1.5",
                "capture.block_size: must be an integer (B) or a string with a unit",
            ),
            ("block_timeout = \"0s\"", "capture.block_timeout: must be more than 0"),
            ("block_timeout = \"1h\"", "capture.block_timeout: \"1h\": unknown unit"),
            ("block_timeout = \"1min\"", "capture.block_timeout: 60000ms is too long"),
            (
                "buffer_size = \"4GiB\"",
                "capture.buffer_size: must be 1 byte to 4GiB - 1",
            ),
        ] {
            let e = Config::from_toml("a.toml", &format!("[capture]\nmethod = \"af_packet\"\n{body}\n"))
                .err()
                .unwrap_or_else(|| panic!("{body}: accepted"));
            assert!(
                e.0.starts_with("a.toml: ") && e.0.contains(want) && !e.0.contains('\n'),
                "{body}: {}",
                e.0
            );
        }
        // Ring keys are checked even with libpcap (`--method af_packet` may pick them up).
        assert!(Config::from_toml("a.toml", "[capture]\nblock_size = \"3MiB\"\n").is_err());
    }
}
