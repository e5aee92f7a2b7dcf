//! clawlink-api's integration tests, in one binary (one per crate keeps link time down):
//! property tests of execute and preview bodies (`body_props`), and the router driven
//! in-process with `oneshot` against the real Postgres, RabbitMQ and Redis (`router`,
//! set up by `harness`), the MCP transport on the same router (`mcp`), and pairing
//! (`pairing`). The same api over a real port is tested in `tests/e2e`.

mod body_props;
mod harness;
mod mcp;
mod pairing;
mod router;
mod tools;
