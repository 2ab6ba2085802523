//! apitap command line: parse flags, build the config, run, map errors to exit codes
//! (0 success, 1 bad input or output failure, 2 usage or configuration error).

use std::process::ExitCode;

use apitap::app::{self, AppError, Signals};
use apitap::cli::{Cli, Cmd, ConfigCmd, RulesCmd};
use apitap::config::{Config, DEFAULT_TOML};
use clap::Parser;

fn main() -> ExitCode {
    // Before the threads start: see memtune for why (it only changes how memory is paged).
    apitap::memtune::disable_thp();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // `files` is Some for a replay, None for a live run.
    let (cfg, files) = match &cli.cmd {
        Cmd::Replay(a) => (a.to_config(), Some(&a.files)),
        Cmd::Catalog(a) => (a.to_config(), Some(&a.files)),
        Cmd::Report(a) => (a.to_config(), Some(&a.files)),
        Cmd::Live(a) => (a.to_config(), None),
        Cmd::Config(ConfigCmd::Default) => {
            print!("{DEFAULT_TOML}");
            return ExitCode::SUCCESS;
        }
        Cmd::Rules(RulesCmd::Default) => {
            print!("{}", apitap::rules::DEFAULT_RULES);
            return ExitCode::SUCCESS;
        }
        Cmd::Rules(RulesCmd::Check { file }) => {
            let r = apitap::rules::RuleSet::from_file(file)
                .and_then(|extra| apitap::rules::RuleSet::defaults().extend(extra, file));
            return match r {
                Ok(r) => {
                    println!("{file}: ok ({} rules with the built-in pack)", r.rules.len());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("apitap: {e}");
                    ExitCode::from(2)
                }
            };
        }
        Cmd::Config(ConfigCmd::Check { file }) => {
            return match Config::from_file(file) {
                Ok(_) => {
                    println!("{file}: ok");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("apitap: {e}");
                    ExitCode::from(2)
                }
            };
        }
    };
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            eprintln!("apitap: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log_level)),
        )
        .init();
    let res = Signals::install().and_then(|sig| match files {
        Some(files) => app::replay_with(&cfg, files, &sig),
        None => app::live(&cfg, &sig),
    });
    let res = res.and_then(|s| {
        if let Some(c) = &s.catalog {
            let out = match &cli.cmd {
                Cmd::Catalog(a) if a.format == "json" => Some((c.json(), a.output.clone())),
                Cmd::Catalog(a) => Some((apitap::catalog::openapi::document(c), a.output.clone())),
                _ => cfg
                    .catalog_path
                    .clone()
                    .map(|p| (apitap::catalog::openapi::document(c), p)),
            };
            if let Some((doc, path)) = out {
                app::write_document(&path, &doc)?;
            }
        }
        Ok(s)
    });
    match res {
        Ok(s) => {
            if cfg.summary {
                app::print_summary(&s);
            }
            ExitCode::SUCCESS
        }
        // `apitap replay f.pcap | head`: the reader went away; that is not an error (as in
        // ripgrep): exit 0, say nothing.
        Err(AppError::Output(e))
            if e.kind() == std::io::ErrorKind::BrokenPipe && e.to_string().starts_with("stdout") =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("apitap: {e}");
            ExitCode::from(match e {
                AppError::Usage(_) => 2,
                AppError::Input(_) | AppError::Output(_) => 1,
            })
        }
    }
}

// Events are allocated on the capture thread and freed on the workers: glibc's malloc pays for
// that in arena locking and consolidation; mimalloc's thread-free lists do not.
#[global_allocator]
static GLOBAL: apitap::alloc::Mi = apitap::alloc::Mi;
