//! The acceptance suite lives in `tests/acceptance.rs`; see docs/RELIABILITY.md.
