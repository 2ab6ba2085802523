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
static GLOBAL: Mi = Mi;

/// mimalloc, asked by size alone for the alignments every block has anyway. The `mimalloc`
/// crate's `MiMalloc` asks `mi_malloc_aligned` for every allocation, whose checks (a power of
/// two? a free block of the right alignment?) cost about 20 instructions more than `mi_malloc`
/// on each of the ~23 allocations a small API call makes.
struct Mi;

/// The alignment of every mimalloc block: block sizes are multiples of the word (8 bytes) and
/// the first block of a page is aligned to 16 (`MI_PAGE_MIN_START_BLOCK_ALIGN`), so every
/// block is 8-aligned whatever its size.
const MI_BLOCK_ALIGN: usize = 8;

// SAFETY: every method hands the request to mimalloc, which returns null or a block of at
// least `size` bytes: to `mi_malloc`/`mi_zalloc`/`mi_realloc` only when the alignment asked for
// is at most `MI_BLOCK_ALIGN`, which every mimalloc block has (see there); otherwise to the
// aligned functions, exactly as the `mimalloc` crate's `MiMalloc` does. Blocks from either
// are freed by `mi_free` (mimalloc finds a block's page from its address, aligned or not).
unsafe impl std::alloc::GlobalAlloc for Mi {
    #[inline]
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        if l.align() <= MI_BLOCK_ALIGN {
            // SAFETY: see the impl
            unsafe { libmimalloc_sys::mi_malloc(l.size()).cast() }
        } else {
            // SAFETY: see the impl
            unsafe { libmimalloc_sys::mi_malloc_aligned(l.size(), l.align()).cast() }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, l: std::alloc::Layout) -> *mut u8 {
        if l.align() <= MI_BLOCK_ALIGN {
            // SAFETY: see the impl
            unsafe { libmimalloc_sys::mi_zalloc(l.size()).cast() }
        } else {
            // SAFETY: see the impl
            unsafe { libmimalloc_sys::mi_zalloc_aligned(l.size(), l.align()).cast() }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, _l: std::alloc::Layout) {
        // SAFETY: `p` came from this allocator (the caller's contract), so from mimalloc
        unsafe { libmimalloc_sys::mi_free(p.cast()) }
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new_size: usize) -> *mut u8 {
        if l.align() <= MI_BLOCK_ALIGN {
            // SAFETY: see the impl; `p` came from mimalloc
            unsafe { libmimalloc_sys::mi_realloc(p.cast(), new_size).cast() }
        } else {
            // SAFETY: see the impl; `p` came from mimalloc
            unsafe { libmimalloc_sys::mi_realloc_aligned(p.cast(), new_size, l.align()).cast() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout};

    #[test]
    fn mi_blocks_have_the_alignment_asked_and_keep_their_bytes() {
        for size in [
            1usize,
            3,
            7,
            8,
            9,
            15,
            16,
            17,
            24,
            31,
            48,
            100,
            1000,
            5000,
            70_000,
            1 << 20,
        ] {
            for align in [1usize, 2, 4, 8, 16, 32, 64, 4096] {
                let l = Layout::from_size_align(size, align).unwrap();
                let grown = Layout::from_size_align(2 * size + 1, align).unwrap();
                // SAFETY: `l` has a non-zero size; each block is written and read within its
                // size, reallocated with the layout it was made with, freed once with its own.
                unsafe {
                    let p = Mi.alloc(l);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "alloc: size {size} align {align}");
                    for i in 0..size {
                        p.add(i).write(i as u8);
                    }
                    let q = Mi.realloc(p, l, grown.size());
                    assert_eq!(q as usize % align, 0, "realloc: size {size} align {align}");
                    assert!(
                        (0..size).all(|i| q.add(i).read() == i as u8),
                        "size {size} align {align}"
                    );
                    Mi.dealloc(q, grown);
                    let z = Mi.alloc_zeroed(l);
                    assert_eq!(z as usize % align, 0, "alloc_zeroed: size {size} align {align}");
                    assert!((0..size).all(|i| z.add(i).read() == 0), "size {size} align {align}");
                    Mi.dealloc(z, l);
                }
            }
        }
    }

    #[test]
    fn every_small_block_is_word_aligned() {
        // (many blocks of each small size, so blocks deep into a page are looked at too)
        for size in 1..=130usize {
            let l = Layout::from_size_align(size, MI_BLOCK_ALIGN).unwrap();
            // SAFETY: non-zero sizes; every block freed once with its layout.
            let blocks: Vec<*mut u8> = (0..300).map(|_| unsafe { Mi.alloc(l) }).collect();
            for &p in &blocks {
                assert!(!p.is_null());
                assert_eq!(p as usize % MI_BLOCK_ALIGN, 0, "size {size}");
            }
            for p in blocks {
                // SAFETY: as above
                unsafe { Mi.dealloc(p, l) };
            }
        }
    }
}
