//! clawlink-common: the library the three binaries share.
//!
//! One module per concern; nothing here knows about HTTP routing or the dashboard.
//! A tool call reads top to bottom through `queue` (the job message and its lanes),
//! `results` (where the answer goes) and, in the worker, `provider`, `pacing` and `retry`.

pub mod approval;
pub mod audit;
pub mod batch;
pub mod catalog;
pub mod client_addr;
pub mod codes;
pub mod config;
pub mod crypto;
pub mod db;
pub mod grant;
pub mod ids;
pub mod keys;
pub mod lock;
pub mod metrics;
pub mod oauth;
pub mod pacing;
pub mod provider;
pub mod queue;
pub mod refresh;
pub mod results;
pub mod retry;
pub mod rotation;
pub mod secret;
pub mod startup;
pub mod status;
pub mod telemetry;
pub mod tokens;

/// Migrations embedded in every binary, so `clawlink-api migrate` needs no files on disk.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
