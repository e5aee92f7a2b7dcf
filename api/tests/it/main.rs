//! clawlink-api's integration tests, in one binary (one per crate keeps link time down):
//! property tests of execute and preview bodies (`body_props`).

mod body_props;
