//! Command-line flags, turned into a validated [`Config`]: the config file first (if any),
//! then every flag given on the command line on top.

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError};

#[derive(Parser, Debug)]
#[command(
    name = "apitap",
    version,
    about = "Passive API traffic sensor: HTTP transactions, anomalies and stats as EVE JSON lines"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Replay capture files (pcap, pcapng, gzip'd; `-` for stdin) into JSON lines.
    Replay(ReplayArgs),
    /// Capture from network interfaces (a SPAN port, a tap) until SIGINT/SIGTERM.
    Live(LiveArgs),
    /// Check a configuration file, or print the commented default one.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// The API inventory of capture files: endpoints, parameters, schemas, as OpenAPI 3.1 or JSON.
    Catalog(CatalogArgs),
    /// Check a rule file, or print the built-in rule pack.
    #[command(subcommand)]
    Rules(RulesCmd),
    /// A forensic HTML report of capture files: summary, timeline, attackers, API catalog.
    Report(ReportArgs),
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Capture files, read in order as one capture.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,
    /// Write the report (one self-contained HTML file) to PATH.
    #[arg(short, long, value_name = "PATH", required = true)]
    pub output: String,
    /// TOML configuration file.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<String>,
    /// A rule file added to the built-in pack.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<String>,
    /// A reference OpenAPI document: mark endpoints shadow or zombie.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<String>,
    /// Key for the keyed hashes that replace secrets.
    #[arg(long, value_name = "KEY", env = "APITAP_HASH_KEY", hide_env_values = true)]
    pub hash_key: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// No summary on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

impl ReportArgs {
    pub fn to_config(&self) -> Result<Config, ConfigError> {
        let mut c = match &self.config {
            Some(p) => Config::from_file(p)?,
            None => Config::default(),
        };
        c.sinks = Vec::new();
        c.report_path = Some(self.output.clone());
        c.event_types = crate::event::EventTypes::all();
        c.profile = true;
        c.endpoint_events = true;
        c.stats_interval_s = 0;
        if let Some(p) = &self.rules {
            c.rules_file = Some(p.clone());
        }
        if let Some(p) = &self.spec {
            c.spec_path = Some(p.clone());
        }
        if let Some(k) = &self.hash_key {
            if k.is_empty() {
                return Err(ConfigError("--hash-key: must not be empty".into()));
            }
            c.hash_key = k.as_bytes().to_vec();
        }
        c.progress = !self.no_progress;
        c.summary = !self.quiet;
        Ok(c)
    }
}

#[derive(Subcommand, Debug)]
pub enum RulesCmd {
    /// Validate FILE (with the built-in pack it extends): exit 0 if good, else one line naming
    /// the rule, the key and the line, exit 2.
    Check { file: String },
    /// Print the built-in rule pack.
    Default,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Validate FILE: exit 0 if it is good, else one line naming the key and line, exit 2.
    Check { file: String },
    /// Print the default configuration, every option commented.
    Default,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Capture files, read in order as one capture.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,
    /// Only frames matching this BPF expression (libpcap syntax, e.g. "tcp port 8080").
    #[arg(long, value_name = "EXPR")]
    pub bpf: Option<String>,
    /// Only frames at or after this time (2026-11-29T09:05:00Z, "2026-11-29 09:05:00", or
    /// Unix seconds; UTC unless an offset is given).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only frames at or before this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl ReplayArgs {
    pub fn to_config(&self) -> Result<Config, ConfigError> {
        let mut c = self.common.to_config()?;
        if let Some(b) = &self.bpf {
            c.capture.bpf = b.clone();
        }
        let t = |flag: &str, v: &Option<String>| {
            v.as_deref()
                .map(crate::capture::filter::parse_time)
                .transpose()
                .map_err(|e| ConfigError(format!("{flag}: {e}")))
        };
        c.since = t("--since", &self.since)?;
        c.until = t("--until", &self.until)?;
        if let (Some(s), Some(u)) = (c.since, c.until)
            && s > u
        {
            return Err(ConfigError("--since is after --until".into()));
        }
        Ok(c)
    }
}

#[derive(Args, Debug)]
pub struct CatalogArgs {
    /// Capture files, read in order as one capture.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,
    /// openapi (an OpenAPI 3.1 document) or json (the raw catalog).
    #[arg(long, value_name = "FORMAT", default_value = "openapi", value_parser = ["openapi", "json"])]
    pub format: String,
    /// Write the document to PATH (`-`: stdout).
    #[arg(short, long, value_name = "PATH", default_value = "-")]
    pub output: String,
    /// TOML configuration file.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<String>,
    /// Distinct values at one path position before it is learned as a parameter.
    #[arg(long, value_name = "N")]
    pub learn_threshold: Option<usize>,
    /// A reference OpenAPI document (JSON or YAML): mark endpoints shadow or zombie.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<String>,
}

impl CatalogArgs {
    pub fn to_config(&self) -> Result<Config, ConfigError> {
        let mut c = match &self.config {
            Some(p) => Config::from_file(p)?,
            None => Config::default(),
        };
        c.sinks = Vec::new();
        c.profile = true;
        c.rules_enabled = false;
        c.endpoint_events = false;
        c.snapshot_interval_s = 0;
        if let Some(p) = &self.spec {
            c.spec_path = Some(p.clone());
        }
        c.progress = false;
        c.summary = false;
        c.stats_interval_s = 0;
        if let Some(t) = self.learn_threshold {
            c.catalog.learn_threshold = t;
        }
        Ok(c)
    }
}

#[derive(Args, Debug)]
pub struct LiveArgs {
    /// Interface to capture from (repeat for several).
    #[arg(short, long = "interface", value_name = "IFACE")]
    pub interfaces: Vec<String>,
    /// BPF capture filter, e.g. "tcp port 80".
    #[arg(long, value_name = "EXPR")]
    pub bpf: Option<String>,
    /// Bytes captured per packet.
    #[arg(long, value_name = "BYTES")]
    pub snaplen: Option<u32>,
    /// Kernel capture buffer size, bytes.
    #[arg(long, value_name = "BYTES")]
    pub buffer_size: Option<u32>,
    /// Do not put the interface in promiscuous mode.
    #[arg(long)]
    pub no_promisc: bool,
    /// Capture method: pcap (libpcap) or af_packet (Linux rings with fanout).
    #[arg(long, value_name = "METHOD", value_parser = ["pcap", "af_packet"])]
    pub method: Option<String>,
    /// af_packet: capture threads per interface.
    #[arg(long, value_name = "K")]
    pub threads: Option<usize>,
    /// Once capturing, switch to this user and drop all privileges (when started as root).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9157).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct CommonArgs {
    /// TOML configuration file (see `apitap config default`).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<String>,
    /// Write JSON lines to PATH (`-`: stdout; also syslog+udp://H:P, syslog+tcp://H:P).
    /// Repeat for several sinks. Replaces the config's output.sinks.
    #[arg(short, long, value_name = "PATH")]
    pub output: Vec<String>,
    /// Event types to write, comma-separated (http, alert, anomaly, endpoint, entity, stats, tls;
    /// default all).
    #[arg(long, value_name = "TYPES", value_delimiter = ',')]
    pub types: Vec<String>,
    /// Worker threads (default: cores - 1; 0: a replay analyses on the capture thread, live
    /// runs one worker).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=256))]
    pub workers: Option<u16>,
    /// Pin a replay's capture thread and workers to CPUs: auto (when each can have a CPU of
    /// its own; the default), on, off.
    #[arg(long, value_name = "MODE", value_parser = ["auto", "on", "off"])]
    pub pin_threads: Option<String>,
    /// Sensor name for the EVE `host` field (default: host name).
    #[arg(long, value_name = "NAME")]
    pub sensor_name: Option<String>,
    /// Body bytes inspected per message (default 65536).
    #[arg(long, value_name = "BYTES")]
    pub body_depth: Option<usize>,
    /// Include request/response headers (redacted) in http events.
    #[arg(long)]
    pub log_headers: bool,
    /// Most flows tracked at once (default 262144).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(16..))]
    pub max_flows: Option<u64>,
    /// Seconds between stats events (0: only at exit; default 60).
    #[arg(long, value_name = "SECS")]
    pub stats_interval: Option<u64>,
    /// Key for the keyed hashes that replace secrets in output.
    #[arg(long, value_name = "KEY", env = "APITAP_HASH_KEY", hide_env_values = true)]
    pub hash_key: Option<String>,
    /// Write the API catalog (OpenAPI 3.1) to PATH at every snapshot and at exit.
    #[arg(long, value_name = "PATH")]
    pub catalog: Option<String>,
    /// A reference OpenAPI document (JSON or YAML): endpoints are marked shadow or zombie.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<String>,
    /// A rule file added to the built-in pack (see `apitap rules default`).
    #[arg(long, value_name = "FILE")]
    pub rules: Option<String>,
    /// No rules, alerts or entity tracking.
    #[arg(long)]
    pub no_rules: bool,
    /// Also write a forensic HTML report (summary, timeline, attackers, catalog) to PATH at
    /// the end of the run (it sees the event types written).
    #[arg(long, value_name = "PATH")]
    pub report: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// No stats summary on stderr at exit.
    #[arg(short, long)]
    pub quiet: bool,
}

impl CommonArgs {
    pub fn to_config(&self) -> Result<Config, ConfigError> {
        let mut c = match &self.config {
            Some(p) => Config::from_file(p)?,
            None => Config::default(),
        };
        if !self.output.is_empty() {
            for o in &self.output {
                o.parse::<crate::sink::SinkSpec>()
                    .map_err(|e| ConfigError(format!("--output {o:?}: {e}")))?;
            }
            c.sinks = self.output.clone();
        }
        if !self.types.is_empty() {
            c.event_types =
                crate::event::EventTypes::parse(&self.types).map_err(|e| ConfigError(format!("--types: {e}")))?;
        }
        if let Some(w) = self.workers {
            c.workers = w as usize;
        }
        if let Some(p) = &self.pin_threads {
            c.pin_threads = p.parse().map_err(|e| ConfigError(format!("--pin-threads: {e}")))?;
        }
        if let Some(n) = &self.sensor_name {
            c.sensor_name = n.clone();
        }
        if let Some(k) = &self.hash_key {
            if k.is_empty() {
                return Err(ConfigError("--hash-key: must not be empty".into()));
            }
            c.hash_key = k.as_bytes().to_vec();
        }
        if let Some(d) = self.body_depth {
            c.http.body_depth = d;
        }
        c.log_headers |= self.log_headers;
        if let Some(m) = self.max_flows {
            c.flow.max_flows = m as usize;
        }
        if let Some(s) = self.stats_interval {
            if s > 366 * 86_400 {
                return Err(ConfigError(
                    "--stats-interval: at most a year (0 = only at exit)".into(),
                ));
            }
            c.stats_interval_s = s;
        }
        if let Some(p) = &self.catalog {
            c.profile = true;
            c.catalog_path = Some(p.clone());
        }
        if let Some(p) = &self.spec {
            c.spec_path = Some(p.clone());
        }
        if let Some(p) = &self.rules {
            c.rules_file = Some(p.clone());
        }
        if self.no_rules {
            c.rules_enabled = false;
        }
        if let Some(p) = &self.report {
            c.report_path = Some(p.clone());
        }
        c.progress = !self.no_progress;
        c.summary = !self.quiet;
        Ok(c)
    }
}

impl LiveArgs {
    pub fn to_config(&self) -> Result<Config, ConfigError> {
        let mut c = self.common.to_config()?;
        if !self.interfaces.is_empty() {
            c.capture.interfaces = self.interfaces.clone();
        }
        if let Some(b) = &self.bpf {
            c.capture.bpf = b.clone();
        }
        if let Some(s) = self.snaplen {
            c.capture.snaplen = s;
        }
        if let Some(b) = self.buffer_size {
            c.capture.buffer_size = b;
        }
        if self.no_promisc {
            c.capture.promiscuous = false;
        }
        if let Some(m) = &self.method {
            c.capture.method = if m == "af_packet" {
                crate::config::CaptureMethod::AfPacket
            } else {
                crate::config::CaptureMethod::Pcap
            };
        }
        if let Some(k) = self.threads {
            if !(1..=64).contains(&k) {
                return Err(ConfigError("--threads: must be 1 to 64".into()));
            }
            c.capture.threads = k;
        }
        if c.capture.method == crate::config::CaptureMethod::AfPacket {
            crate::capture::afpacket::check(&c.capture.ring()).map_err(ConfigError)?;
        }
        if let Some(u) = &self.user {
            c.user = Some(u.clone());
        }
        if let Some(m) = &self.metrics {
            c.metrics_listen =
                Some(crate::config::parse_listen(m).map_err(|e| ConfigError(format!("--metrics: {e}")))?);
        }
        c.progress = false;
        Ok(c)
    }
}
