//! strata: an S3-compatible gateway that keeps 100% of the data in cold object stores, in
//! their native format, with authoritative metadata in a catalog.
//!
//! # Layout
//!
//! Dependencies point one way, top to bottom:
//!
//! | module        | owns                                                              |
//! |---------------|-------------------------------------------------------------------|
//! | [`cli`]       | the command line (serve, import, cache, status, copy/sync/…)      |
//! | [`transfer`]  | bulk copy, sync, move, verify between any two stores; resumable   |
//! | [`server`]    | wiring a config into a running process; shutdown order            |
//! | [`http`]      | accept loop, connection cap, timeouts, graceful drain (no S3);    |
//! |               | Range and conditional-request parsing                             |
//! | [`access_log`]| the access log (combined or JSON lines)                           |
//! | [`health`]    | backend probes, sparkline series, the status snapshot             |
//! | [`worker`]    | the one shape of background loops, and their supervisor           |
//! | [`api`]       | front ends: `api::s3`, `api::web` (anonymous HTTP), `api::admin`  |
//! |               | (`/_strata/`), `api::status`                                      |
//! | [`auth`]      | where the S3 keys and link-signing keys come from                 |
//! | [`policy`]    | access rules, serving modes, signed links, login cookies          |
//! | [`tier`]      | read and write paths, atomic publish, multipart, the hot tier,    |
//! |               | replica failover on read                                          |
//! | [`replication`]| the scrub that queues repairs of missing replicas; lag report    |
//! | [`journal`]   | staging files, write placement, the uploader that drains entries  |
//! | [`catalog`]   | object metadata and listings (SQLite or PostgreSQL), row cache    |
//! | [`backend`]   | cold stores behind one narrow trait (OpenDAL inside), metrics,    |
//! |               | circuit breakers with latency budgets                             |
//! | [`telemetry`] | the Prometheus recorder, histogram buckets, recent errors         |
//! | [`config`]    | the TOML tree: parse, resolve, validate                           |
//! | [`error`]     | error kinds, retryable versus permanent                           |

pub mod access_log;
pub mod api;
pub mod auth;
pub mod backend;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod error;
pub mod health;
pub mod http;
pub mod journal;
pub mod policy;
pub mod replication;
pub mod server;
pub mod telemetry;
pub mod tier;
pub mod transfer;
pub mod worker;
