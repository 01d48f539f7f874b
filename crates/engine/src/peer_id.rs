//! BEP 20 peer ids: `-SH` + four version digits + `-` + 12 random characters.

use rand::Rng;
use shoal_core::Id20;

/// A fresh peer id for this process start, so peers can tell a restarted client from the old one.
pub fn new_peer_id() -> Id20 {
    let mut id = [0u8; 20];
    let major: u32 = env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap_or(0);
    let minor: u32 = env!("CARGO_PKG_VERSION_MINOR").parse().unwrap_or(0);
    let patch: u32 = env!("CARGO_PKG_VERSION_PATCH").parse().unwrap_or(0);
    let prefix = format!("-SH{}{}{:02}-", major % 10, minor % 10, patch % 100);
    id[..8].copy_from_slice(&prefix.as_bytes()[..8]);
    // Printable random characters, as most clients use, so logs and trackers show them plainly.
    const CHARS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = rand::rng();
    for b in &mut id[8..] {
        *b = CHARS[rng.random_range(0..CHARS.len())];
    }
    Id20(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_freshness() {
        let a = new_peer_id();
        assert_eq!(&a.0[..3], b"-SH");
        assert_eq!(a.0[7], b'-');
        assert_ne!(a, new_peer_id());
    }
}
