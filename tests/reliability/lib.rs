//! The acceptance suite lives in `tests/acceptance.rs`; see RELIABILITY.md in the design notes.
