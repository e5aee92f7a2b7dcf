//! Cross-binary tests of the spine against real Postgres, RabbitMQ and Redis, with the
//! provider emulator over real HTTP. One test binary keeps link time down.

mod agent;
mod connections;
mod execute;
mod mcp;
mod openapi;
mod reliability;
mod tools;
