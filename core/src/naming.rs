//! Deterministic schema names and cache prefixes from an identity.
//!
//! Only the hash of an identity ever reaches SQL, so any text (quotes, emoji, 10 kB, empty) is
//! safe. The identity's parts are length-prefixed before hashing, so `a:b`/`c` and `a`/`b:c`
//! differ. Rules are pinned by `tests/vectors/naming.json`.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Default schema name prefix.
pub const DEFAULT_PREFIX: &str = "test_";
/// Default number of hex characters in a name.
pub const DEFAULT_HASH_LEN: usize = 8;
/// Smallest and largest configurable hash lengths.
pub const HASH_LEN_RANGE: std::ops::RangeInclusive<usize> = 8..=32;
/// PostgreSQL's identifier limit (NAMEDATALEN - 1).
pub const MAX_IDENTIFIER: usize = 63;
/// Longest prefix accepted: leaves room for 32 hex chars and a 9-char run salt.
pub const MAX_PREFIX: usize = MAX_IDENTIFIER - 32 - 9;

/// What a schema isolates: a feature (module, package, file) and a scenario (test, example),
/// plus an optional discriminator (Scenario Outline row, parametrize id).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The feature, module or package.
    pub feature: String,
    /// The scenario or test name.
    pub scenario: String,
    /// An optional discriminator such as an outline row or parametrize id.
    pub discriminator: Option<String>,
}

impl Identity {
    /// An identity from a feature and a scenario.
    pub fn new(feature: impl Into<String>, scenario: impl Into<String>) -> Self {
        Identity { feature: feature.into(), scenario: scenario.into(), discriminator: None }
    }

    /// The same identity with a discriminator.
    pub fn with_discriminator(mut self, d: impl Into<String>) -> Self {
        self.discriminator = Some(d.into());
        self
    }

    /// Full sha256 of the identity, as 64 lowercase hex characters.
    ///
    /// Encoding: `b"pgisolate/identity/v1"`, then one byte with the number of parts (2 or 3),
    /// then each part as an 8-byte big-endian byte length followed by its UTF-8 bytes. Text is
    /// hashed as given (no Unicode normalization), so NFC and NFD spellings differ.
    pub fn hash_hex(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"pgisolate/identity/v1");
        let parts: Vec<&str> =
            [Some(self.feature.as_str()), Some(self.scenario.as_str()), self.discriminator.as_deref()]
                .into_iter()
                .flatten()
                .collect();
        h.update([parts.len() as u8]);
        for p in parts {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p.as_bytes());
        }
        hex(&h.finalize())
    }

    /// A short printable form for registries and messages (at most 500 characters).
    pub fn display(&self) -> String {
        let mut s = format!("{} / {}", self.feature, self.scenario);
        if let Some(d) = &self.discriminator {
            s.push_str(" / ");
            s.push_str(d);
        }
        if s.chars().count() > 500 {
            s = s.chars().take(497).collect::<String>() + "...";
        }
        s
    }
}

/// Lowercase hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// sha256 of arbitrary bytes as lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Checks a schema-name prefix: `[a-z_][a-z0-9_]*`, at most [`MAX_PREFIX`] bytes, not `pg_`.
pub(crate) fn validate_prefix(prefix: &str) -> Result<()> {
    let ok_chars = prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    let ok_start = prefix.bytes().next().is_some_and(|b| !b.is_ascii_digit());
    if !ok_chars || !ok_start || prefix.len() > MAX_PREFIX || prefix.starts_with("pg_") {
        return Err(Error::Config(format!(
            "schema prefix {prefix:?} is not allowed: use lowercase letters, digits and '_', \
             not empty, not starting with a digit or 'pg_', at most {MAX_PREFIX} bytes (PGISOLATE_SCHEMA_PREFIX)"
        )));
    }
    Ok(())
}

/// Checks a hash length against [`HASH_LEN_RANGE`].
pub(crate) fn validate_hash_len(len: usize) -> Result<()> {
    if !HASH_LEN_RANGE.contains(&len) {
        return Err(Error::Config(format!(
            "hash length {len} is out of range: use 8..=32 hex characters (PGISOLATE_HASH_LEN)"
        )));
    }
    Ok(())
}

/// The deterministic schema name for an identity: `<prefix><first hash_len hex chars>`.
pub fn schema_name(prefix: &str, hash_len: usize, identity: &Identity) -> Result<String> {
    validate_prefix(prefix)?;
    validate_hash_len(hash_len)?;
    Ok(format!("{prefix}{}", &identity.hash_hex()[..hash_len]))
}

/// The cache-key prefix of a schema name made with `prefix`: its hash part plus `_`.
pub fn cache_prefix(prefix: &str, schema: &str) -> String {
    let hash = schema.strip_prefix(prefix).unwrap_or(schema);
    format!("{hash}_")
}

/// The line every test runner prints for a kept schema (a failed test's): where it is, which
/// test it was, and a shell command that opens it (`psql` with the schema's URL, quoted).
pub fn kept_line(schema: &str, test: &str, url: &str) -> String {
    format!("pgisolate: kept schema {schema} ({test}); open it with: psql '{}'", url.replace('\'', "'\\''"))
}

/// A cache key inside a schema's namespace: `<cache prefix><key>`.
pub fn cache_key(cache_prefix: &str, key: &str) -> String {
    format!("{cache_prefix}{key}")
}

/// Candidate names for an identity from index `start` on, in the order the engine tries them:
/// the configured length, then longer hashes in steps of 8 up to 32, then 32 hex characters
/// plus a salt derived from the run id and an attempt counter. Deterministic for a given
/// (identity, run id).
pub(crate) fn candidates_from(
    prefix: &str,
    hash_len: usize,
    identity_hash: &str,
    run_id: &str,
    start: usize,
) -> impl Iterator<Item = String> {
    let prefix = prefix.to_owned();
    let full = identity_hash[..32].to_owned();
    let run_id = run_id.to_owned();
    let mut lens: Vec<usize> = vec![hash_len];
    let mut l = hash_len;
    while l < 32 {
        l = (l + 8).min(32);
        lens.push(l);
    }
    let skip_salted = start.saturating_sub(lens.len()) as u32;
    let fixed: Vec<String> = lens.into_iter().skip(start).map(|l| format!("{prefix}{}", &full[..l])).collect();
    let salted = (skip_salted..).map(move |i| {
        let salt = sha256_hex(format!("{run_id}\0{full}\0{i}").as_bytes());
        format!("{prefix}{full}_{}", &salt[..8])
    });
    fixed.into_iter().chain(salted)
}

/// True when `name` is a name PostgreSQL or users reserve and the engine must never drop.
pub(crate) fn is_reserved(name: &str) -> bool {
    name.starts_with("pg_") || name == "public" || name == "information_schema" || name == "pgisolate"
}

/// True when `name` is a plain lowercase identifier (`[a-z_][a-z0-9_]*`, at most 63 bytes).
pub fn is_plain_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IDENTIFIER
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

/// This machine's host name (\"unknown\" when it cannot be read).
pub(crate) fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_prefix_separates_parts() {
        let a = Identity::new("a:b", "c");
        let b = Identity::new("a", "b:c");
        assert_ne!(a.hash_hex(), b.hash_hex());
        assert_ne!(Identity::new("f", "s").hash_hex(), Identity::new("f", "s").with_discriminator("").hash_hex());
    }

    #[test]
    fn candidates_extend_then_salt() {
        let h = Identity::new("f", "s").hash_hex();
        let c: Vec<String> = candidates_from("test_", 8, &h, "run", 0).take(6).collect();
        assert_eq!(c[0], format!("test_{}", &h[..8]));
        assert_eq!(c[1], format!("test_{}", &h[..16]));
        assert_eq!(c[3], format!("test_{}", &h[..32]));
        assert!(c[4].starts_with(&c[3]) && c[4].len() == c[3].len() + 9);
        assert_ne!(c[4], c[5]);
        assert!(c.iter().all(|n| is_plain_identifier(n)));
        for start in 0..6 {
            let from: Vec<String> = candidates_from("test_", 8, &h, "run", start).take(6 - start).collect();
            assert_eq!(from, c[start..], "start {start}");
        }
    }

    #[test]
    fn bad_config_is_refused() {
        assert!(validate_prefix("Test_").is_err());
        assert!(validate_prefix("pg_x").is_err());
        assert!(validate_prefix("1x").is_err());
        assert!(validate_hash_len(7).is_err());
        assert!(validate_hash_len(33).is_err());
        assert!(validate_prefix("").is_err());
        assert!(validate_prefix("t_").is_ok());
    }
}
