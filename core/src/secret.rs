//! Randomness from the operating system's CSPRNG (`getrandom`): login-role passwords and SCRAM
//! salts, and the random parts of names (run ids, pool and tombstone schemas, lease keys).

/// `len` lowercase hex characters of OS randomness.
///
/// # Panics
/// If the operating system's random number generator fails (it does not on a running Linux,
/// macOS or Windows; continuing with weaker randomness would hand out guessable passwords).
pub(crate) fn random_hex(len: usize) -> String {
    let mut buf = vec![0u8; len.div_ceil(2)];
    fill(&mut buf);
    let mut s: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    s.truncate(len);
    s
}

/// Fills `buf` with OS randomness (see [`random_hex`] for the panic).
pub(crate) fn fill(buf: &mut [u8]) {
    if let Err(e) = getrandom::fill(buf) {
        panic!("the operating system's random number generator failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_hex_has_the_length_asked_and_differs_each_time() {
        let (a, b) = (super::random_hex(31), super::random_hex(31));
        assert_eq!(a.len(), 31);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }
}
