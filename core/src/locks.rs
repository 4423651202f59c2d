//! Advisory lock classes (the first key of `pg_advisory_lock(int4, int4)`): every lock the
//! engine takes, in one place, so no two features share a key. A leaf: it depends on nothing.
//!
//! | class | second key | held by |
//! |---|---|---|
//! | [`LEASE_CLASS`] | the owner key | an engine's lease connection, for its life |
//! | [`TEMPLATE_CLASS`] | the fingerprint's first 28 bits | the engine building that template (tried, never waited on) |
//! | [`REGISTRY_CLASS`] | 0: registry DDL, 1: the DDL watch, 2: schema `extensions` (made, granted) | the transaction installing it |
//! | [`FENCE_CLASS`] | the owner key | hand-outs (shared), gc's fence (exclusive) |
//! | [`ADMIT_CLASS`] | 0 | the engine weighing the server's slots (`budget::admit`) |

/// classid of owner-lease advisory locks (`'pgis'`).
pub(crate) const LEASE_CLASS: i32 = 0x7067_6973;
/// classid of template-build advisory locks.
pub(crate) const TEMPLATE_CLASS: i32 = LEASE_CLASS + 1;
/// classid of the registry-DDL advisory lock.
pub(crate) const REGISTRY_CLASS: i32 = LEASE_CLASS + 2;
/// classid of the fence lock (objid: the owner key): hand-outs take it shared, gc's fence
/// exclusive.
pub(crate) const FENCE_CLASS: i32 = LEASE_CLASS + 3;
/// classid of engine admission (`budget::admit`): one engine at a time weighs the server's
/// slots.
pub(crate) const ADMIT_CLASS: i32 = LEASE_CLASS + 4;
