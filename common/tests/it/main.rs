//! clawlink-common's integration tests, in one binary (one per crate keeps link time
//! down): the real catalog linted (`catalog_lint`), searched as an agent would
//! (`search_quality`) and rendered under arbitrary arguments (`render_props`), and group
//! commit against a real Postgres (`batch`).

mod batch;
mod catalog_lint;
mod render_props;
mod search_quality;

use clawlink_common::catalog::Catalog;
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// The repository's catalog (`catalog/*.toml`), loaded once for every test here; a file
/// that does not load fails each of them with the file's name and the problem.
fn catalog() -> &'static Catalog {
    static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog");
        Catalog::load_dir(&dir, &BTreeMap::new()).unwrap_or_else(|e| panic!("the catalog loads: {e}"))
    });
    &CATALOG
}
