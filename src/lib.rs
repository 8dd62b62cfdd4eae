//! strata: an S3-compatible gateway that keeps 100% of the data in cold object stores, in
//! their native format, with authoritative metadata in a catalog.
//!
//! # Layout
//!
//! Dependencies point one way, top to bottom:
//!
//! | module      | owns                                                              |
//! |-------------|-------------------------------------------------------------------|
//! | [`cli`]     | the command line (`serve`, `import`)                              |
//! | [`server`]  | wiring a config into a running process; shutdown order            |
//! | [`http`]    | accept loop, connection cap, timeouts, graceful drain (no S3)     |
//! | [`api`]     | protocol front ends: `api::s3` (S3), `api::admin` (`/_strata/`)   |
//! | [`auth`]    | where the S3 keys come from                                       |
//! | [`tier`]    | read and write paths, atomic publish, multipart, the hot tier     |
//! | [`catalog`] | object metadata and listings (SQLite or PostgreSQL)               |
//! | [`backend`] | cold stores behind one narrow trait (OpenDAL inside)              |
//! | [`config`]  | the TOML tree: parse, resolve, validate                           |
//! | [`transfer`] | `strata copy/sync/move/verify` between any two stores, resumable |
//! | [`health`]  | backend probes, sparkline series, the status snapshot            |
//! | [`worker`]  | the one shape of background loops, and their supervisor          |
//! | [`telemetry`] | the Prometheus recorder, histogram buckets, recent errors       |
//! | [`error`]   | error kinds, retryable versus permanent                           |

pub mod api;
pub mod auth;
pub mod backend;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod error;
pub mod health;
pub mod http;
pub mod server;
pub mod telemetry;
pub mod tier;
pub mod transfer;
pub mod worker;
