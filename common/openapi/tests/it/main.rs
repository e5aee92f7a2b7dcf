//! clawlink-openapi's integration tests, one binary: the importer on documents written
//! for it, and every shipped tool checked against its provider's published document.

mod importer;
mod spec_check;
