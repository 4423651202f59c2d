//! Test glue for cargo test.
