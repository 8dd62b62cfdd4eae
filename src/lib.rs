//! strata: an S3-compatible gateway that keeps 100% of the data in cold object stores, in
//! their native format, with authoritative metadata in a catalog.
//!
//! # Layout
//!
//! Dependencies point one way, top to bottom (ARCHITECTURE.md has the layers, and a test
//! holds the code to them):
//!
//! | module         | owns                                                             |
//! |----------------|------------------------------------------------------------------|
//! | [`cli`]        | the command line (serve, import, cache, status, copy/sync/…)     |
//! | [`server`]     | wiring a config into a running process; shutdown order           |
//! | [`api`]        | front ends: `api::s3`, `api::web` (anonymous HTTP), `api::admin` |
//! |                | and its siblings (`/_strata/`), `api::status`; one router        |
//! |                | (`api::router`), one error → status map (`api::reply`)           |
//! | [`access_log`] | the access log (combined or JSON lines)                          |
//! | [`auth`]       | where the S3 keys and link-signing keys come from                |
//! | [`health`]     | backend probes, sparkline series, the status snapshot            |
//! | [`images`]     | image derivatives: options, signatures, the render pool, single  |
//! |                | flight; kept in the hot tier through `tier`                      |
//! | [`policy`]     | access rules, serving modes, signed links, login cookies         |
//! | [`tier`]       | read and write paths, atomic publish, multipart, the hot tier,   |
//! |                | replica failover on read; narrow operator doors                  |
//! | [`transfer`]   | bulk copy, sync, move, verify between any two stores; resumable  |
//! | [`journal`]    | staging files, the uploader that drains entries                  |
//! | [`replication`]| the scrub that queues repairs of missing replicas; the backlog   |
//! | [`cluster`]    | this node's registration and lease; the nodes sharing a catalog  |
//! | [`plan`]       | one resolved `BucketPlan` per bucket; host names of buckets      |
//! | [`backend`]    | cold stores behind one narrow trait (OpenDAL inside), metrics,   |
//! |                | circuit breakers with latency budgets                            |
//! | [`catalog`]    | object metadata and listings (SQLite or PostgreSQL), row cache   |
//! | [`http`]       | accept loop, connection cap, timeouts, graceful drain (no S3);   |
//! |                | Range, conditional-request, query and Basic-auth parsing         |
//! | [`config`]     | the TOML tree: parse, resolve, validate                          |
//! | [`logging`]    | the log filter: from `STRATA_LOG`, changed by a reload           |
//! | [`telemetry`]  | the Prometheus recorder, histogram buckets, recent errors        |
//! | [`worker`]     | the one shape of background loops, and their supervisor          |
//! | [`clock`]      | wall-clock milliseconds, the unit of stored timestamps           |
//! | [`names`]      | valid bucket names and keys; key → store path                    |
//! | [`throttle`]   | the brake on failed authentication, per client address           |
//! | [`error`]      | error kinds, retryable versus permanent                          |

pub mod access_log;
pub mod api;
pub mod auth;
pub mod backend;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod error;
pub mod health;
pub mod http;
pub mod images;
pub mod journal;
pub mod logging;
pub mod names;
pub mod plan;
pub mod policy;
pub mod replication;
pub mod server;
pub mod telemetry;
pub mod throttle;
pub mod tier;
pub mod tls;
pub mod transfer;
pub mod worker;
