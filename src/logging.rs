//! The process's log filter: set up once by `main` (from the `STRATA_LOG` environment
//! variable, else `info`), and changed while running by a config reload when the config's
//! `log` field names one (`docs/design/reload.md`).
//!
//! It owns only the filter; log lines are written by `tracing` wherever they happen. It
//! must not read the config itself.

use crate::error::{Error, ErrorKind, Result};
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

type Handle = tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>;

static FILTER: OnceLock<Handle> = OnceLock::new();

/// The filter of the environment: `STRATA_LOG`, else `info`.
fn from_env() -> EnvFilter {
    EnvFilter::try_from_env("STRATA_LOG").unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the process's subscriber (log lines to stderr) with a filter that
/// [`set_filter`] can change. Call once, before anything logs.
pub fn init() {
    let (layer, handle) = tracing_subscriber::reload::Layer::new(from_env());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if tracing_subscriber::registry().with(layer).with(fmt).try_init().is_ok() {
        let _ = FILTER.set(handle);
    }
}

/// Checks a filter (`tracing`'s `EnvFilter` directives, as `STRATA_LOG` takes them).
fn parse(directives: &str) -> Result<EnvFilter> {
    EnvFilter::try_new(directives)
        .map_err(|e| Error::new(ErrorKind::Config, format!("log: {directives:?} is not a log filter: {e}")))
}

/// Makes `directives` the filter in force, or, with `None`, the environment's again.
/// Nothing when [`init`] did not install the subscriber (tests, embedding).
pub fn set_filter(directives: Option<&str>) -> Result<()> {
    let filter = match directives {
        Some(d) => parse(d)?,
        None => from_env(),
    };
    if let Some(h) = FILTER.get() {
        h.reload(filter).map_err(|e| Error::internal("log filter", e))?;
    }
    Ok(())
}
