//! clawlink-openapi: provider catalogs from published OpenAPI documents, and requests
//! checked against them.
//!
//! - [`Document`] reads Swagger 2.0, OpenAPI 3.0 and 3.1 (JSON or YAML) as plain JSON and
//!   resolves local `$ref`s;
//! - [`import()`] turns a document into a catalog [`Provider`](clawlink_common::catalog::Provider)
//!   and an [`ImportReport`] (what was skipped and why); [`to_catalog_toml`] writes it as a
//!   reviewable catalog file, checked by loading it back;
//! - [`check_request`] says whether a rendered request matches the document's operation;
//! - [`trim()`] keeps only the operations a catalog uses, for vendoring;
//! - [`import_all`] runs the importer over a whole folder of documents.
//!
//! Knows the catalog model (clawlink-common) and nothing of HTTP serving, queues or
//! storage. The `clawlink-api catalog …` commands are in [`cli`].

pub mod check;
pub mod cli;
pub mod directory;
pub mod document;
pub mod import;
pub mod schema;
pub mod trim;
pub mod write;

pub use check::{ApiRoot, CheckOptions, check_request, matching_operation};
pub use directory::{DirectoryReport, import_all};
pub use document::{Document, DocumentError, Version};
pub use import::{Import, ImportError, ImportOptions, ImportReport, SkipReason, Skipped, import};
pub use trim::trim;
pub use write::to_catalog_toml;
