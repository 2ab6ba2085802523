//! Command-line flags, turned into a validated [`Config`].

use clap::{Args, Parser, Subcommand};

use crate::config::Config;

#[derive(Parser, Debug)]
#[command(
    name = "apitap",
    version,
    about = "Passive API traffic sensor: HTTP transactions, API catalog and attack indicators as EVE JSON lines"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Replay capture files (pcap, pcapng, gzip'd; `-` for stdin) into JSON lines.
    Replay(ReplayArgs),
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Capture files, read in order as one capture.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct CommonArgs {
    /// Write JSON lines to PATH (`-`: stdout).
    #[arg(short, long, value_name = "PATH", default_value = "-")]
    pub output: String,
    /// Worker threads (default: cores - 1, at least 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: Option<u16>,
    /// Sensor name for the EVE `host` field (default: host name).
    #[arg(long, value_name = "NAME")]
    pub sensor_name: Option<String>,
    /// Body bytes inspected per message.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    pub body_depth: usize,
    /// Include request/response headers (redacted) in http events.
    #[arg(long)]
    pub log_headers: bool,
    /// Most flows tracked at once.
    #[arg(long, value_name = "N", default_value_t = 262_144, value_parser = clap::value_parser!(u64).range(16..))]
    pub max_flows: u64,
    /// Seconds of packet time between stats events (0: only at exit).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub stats_interval: u64,
    /// Key for the keyed hashes that replace secrets in output.
    #[arg(
        long,
        value_name = "KEY",
        env = "APITAP_HASH_KEY",
        hide_env_values = true
    )]
    pub hash_key: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// No stats summary on stderr at exit.
    #[arg(short, long)]
    pub quiet: bool,
}

impl CommonArgs {
    pub fn to_config(&self) -> Config {
        let mut c = Config {
            output: self.output.clone(),
            ..Config::default()
        };
        if let Some(w) = self.workers {
            c.workers = w as usize;
        }
        if let Some(n) = &self.sensor_name {
            c.sensor_name = n.clone();
        }
        if let Some(k) = &self.hash_key {
            c.hash_key = k.as_bytes().to_vec();
        }
        c.http.body_depth = self.body_depth;
        c.log_headers = self.log_headers;
        c.flow.max_flows = self.max_flows as usize;
        c.stats_interval_s = self.stats_interval;
        c.progress = !self.no_progress;
        c.summary = !self.quiet;
        c
    }
}
