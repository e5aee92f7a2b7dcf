//! Postgres repositories, one module per table family. Functions take a
//! `&mut PgConnection` (a pooled connection or a transaction); handlers never hold SQL.
//! Every query that reads user-owned rows filters by the owner.

pub mod admin;
pub mod approvals;
pub mod billing;
pub mod connect_sessions;
pub mod connections;
pub mod credentials;
pub mod devices;
pub mod executions;
pub mod maintenance;
pub mod pairing;
pub mod users;
pub mod web_sessions;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use std::str::FromStr;
use std::time::Duration;

/// Opens the pool. Statement logging is off: arguments may carry user data.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?.disable_statement_logging();
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // A broken connection shows itself on use and sqlx drops it then; pinging before
        // every acquire would add a round trip to every query.
        .test_before_acquire(false)
        .connect_with(options)
        .await
}

/// Whether `err` is the violation of the named unique index or constraint.
pub fn is_unique_violation(err: &sqlx::Error, constraint: &str) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.constraint() == Some(constraint))
}
