//! The `strata` binary: parse the command line, set up logging, run.

use clap::Parser;

/// With `--features mimalloc`: mimalloc instead of glibc malloc. Allocation is about 13% of
/// CPU on the hot small-object path under glibc; mimalloc serves 1.2-1.4× the requests there
/// but holds more memory with a thousand streams, so it is opt-in (`docs/benchmarks.md`).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = strata::cli::Cli::parse();
    strata::logging::init();
    // The blocking pool serves hot-file reads. Tokio's default of 512 threads lets a
    // thousand concurrent streams each get a thread, and with it a malloc arena: memory
    // that is never returned. 64 threads keep the disk busy at a bounded cost.
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().max_blocking_threads(64).build()?;
    rt.block_on(strata::cli::run(cli))
}
