//! apitap command line: parse flags, build the config, run, map errors to exit codes
//! (0 success, 1 bad input or output failure, 2 usage or configuration error).

use std::process::ExitCode;

use apitap::app::{self, AppError};
use apitap::cli::{Cli, Cmd};
use clap::Parser;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let res = match &cli.cmd {
        Cmd::Replay(a) => {
            let cfg = a.common.to_config();
            app::replay(&cfg, &a.files).map(|s| {
                if cfg.summary {
                    app::print_summary(&s);
                }
            })
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("apitap: {e}");
            ExitCode::from(match e {
                AppError::Usage(_) => 2,
                AppError::Input(_) | AppError::Output(_) => 1,
            })
        }
    }
}
