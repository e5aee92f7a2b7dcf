//! Cross-binary tests of the spine against real Postgres, RabbitMQ and Redis, with the
//! provider emulator over real HTTP. One test binary keeps link time down.

mod agent;
mod approvals;
mod attacks;
mod attacks_web;
mod audit;
mod billing;
mod browser_admin;
mod browser_approvals;
mod browser_chromium;
mod browser_grants;
mod bulkhead;
mod catalog_tools;
mod chaos;
mod connections;
mod dashboard;
mod execute;
mod faults;
mod fuzz_bodies;
mod grants;
mod ha;
mod jobs;
mod lifecycle;
mod mcp;
mod metrics;
mod oauth;
mod openapi;
mod outbox;
mod refresh;
mod reliability;
mod tools;
mod unknown_outcome;
