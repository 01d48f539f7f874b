//! Write tokens for `announce_peer` (BEP 5): a hash of the requester's IP and a secret that
//! rotates every 5 minutes; tokens made with the previous secret are still accepted, so a token
//! is valid for 5 to 10 minutes (BEP 5: "tokens up to ten minutes old are accepted").

use std::net::IpAddr;
use std::time::Duration;

use sha1::{Digest, Sha1};
use shoal_core::Time;

/// How often the secret changes (BEP 5's reference implementation: every five minutes).
pub const ROTATE_EVERY: Duration = Duration::from_secs(5 * 60);
/// Length of the tokens handed out; 8 bytes of SHA-1 cannot be guessed and keep replies short.
pub const TOKEN_LEN: usize = 8;

/// The current and previous secrets.
#[derive(Clone, Debug)]
pub struct TokenSecrets {
    current: [u8; 16],
    previous: [u8; 16],
    rotated_at: Time,
}

impl TokenSecrets {
    /// Starts with `secret` (both slots), rotated at `now`.
    pub fn new(now: Time, secret: [u8; 16]) -> Self {
        TokenSecrets {
            current: secret,
            previous: secret,
            rotated_at: now,
        }
    }

    /// When the next rotation is due.
    pub fn next_rotation(&self) -> Time {
        self.rotated_at + ROTATE_EVERY
    }

    /// Rotates if 5 minutes have passed, taking `fresh` as the new secret. Returns true if it
    /// rotated.
    pub fn maybe_rotate(&mut self, now: Time, fresh: [u8; 16]) -> bool {
        if now < self.next_rotation() {
            return false;
        }
        self.previous = self.current;
        self.current = fresh;
        self.rotated_at = now;
        true
    }

    fn make(secret: &[u8; 16], ip: IpAddr) -> Vec<u8> {
        let mut h = Sha1::new();
        h.update(secret);
        match ip {
            IpAddr::V4(v4) => h.update(v4.octets()),
            IpAddr::V6(v6) => h.update(v6.octets()),
        }
        h.finalize()[..TOKEN_LEN].to_vec()
    }

    /// The token for a requester at `ip`.
    pub fn token_for(&self, ip: IpAddr) -> Vec<u8> {
        Self::make(&self.current, ip)
    }

    /// True if `token` was handed to `ip` under the current or the previous secret.
    pub fn is_valid(&self, token: &[u8], ip: IpAddr) -> bool {
        token == Self::make(&self.current, ip).as_slice()
            || token == Self::make(&self.previous, ip).as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_and_previous_token() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let mut s = TokenSecrets::new(Time::ZERO, [1; 16]);
        let t0 = s.token_for(ip);
        assert!(s.is_valid(&t0, ip));
        assert!(!s.is_valid(&t0, other));
        assert!(!s.maybe_rotate(Time::from_secs(299), [2; 16]));
        assert!(s.maybe_rotate(Time::from_secs(300), [2; 16]));
        // The previous token is still accepted after one rotation ...
        assert!(s.is_valid(&t0, ip));
        let t1 = s.token_for(ip);
        assert_ne!(t0, t1);
        // ... but not after two.
        assert!(s.maybe_rotate(Time::from_secs(600), [3; 16]));
        assert!(!s.is_valid(&t0, ip));
        assert!(s.is_valid(&t1, ip));
        assert!(!s.is_valid(b"", ip));
    }
}
