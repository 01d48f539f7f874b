//! Any bytes from a peer at any point of an MSE handshake: both roles give up or finish, never
//! panic, never take bytes past the handshake's bounds. Three ways in: raw bytes to each role,
//! and a real handshake whose bytes the input corrupts (to reach the encrypted states).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand::rngs::StdRng;
use rand::SeedableRng;
use shoal_core::Id20;
use shoal_mse::{EncryptionPolicy, Handshake, KEY_LEN, MAX_PAD, REQ1_SCAN_LIMIT};

/// The most a receiver can take before it finishes: Ya, PadA + req1, req2, VC/provide/len,
/// PadC, len(IA), IA.
const RECEIVER_MAX: usize = KEY_LEN + REQ1_SCAN_LIMIT + 20 + 14 + MAX_PAD + 2 + 65535;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(u64::from(mode));
    let hashes = vec![Id20([1; 20]), Id20([2; 20])];
    let chunk = usize::from(mode % 64) + 1;
    if mode & 0x80 == 0 {
        let mut b = Handshake::receiver(hashes, EncryptionPolicy::Prefer, &mut rng);
        let mut a = Handshake::initiator(Id20([1; 20]), 3, b"hi", &mut rng);
        let mut taken = 0;
        for piece in rest.chunks(chunk) {
            match b.handle_input(piece) {
                Ok(n) => taken += n,
                Err(_) => break,
            }
        }
        assert!(taken <= RECEIVER_MAX);
        for piece in rest.chunks(chunk) {
            if a.handle_input(piece).is_err() {
                break;
            }
        }
        return;
    }
    // A real pair; the input XORs into the initiator's bytes at the receiver's end.
    let mut a = Handshake::initiator(Id20([2; 20]), 3, b"hello", &mut rng);
    let mut b = Handshake::receiver(hashes, EncryptionPolicy::Prefer, &mut rng);
    let mut wire_ab = Vec::new();
    let mut wire_ba = Vec::new();
    let mut flips = rest.iter().cycle().take(rest.len().max(1) * 8);
    for _ in 0..64 {
        if let Some(out) = a.poll_transmit() {
            wire_ab.extend(out);
        }
        if let Some(out) = b.poll_transmit() {
            wire_ba.extend(out);
        }
        if !rest.is_empty() {
            for byte in wire_ab.iter_mut() {
                *byte ^= flips.next().copied().unwrap_or(0) & 0x01;
            }
        }
        let Ok(n) = b.handle_input(&wire_ab) else { return };
        wire_ab.drain(..n);
        let Ok(n) = a.handle_input(&wire_ba) else { return };
        wire_ba.drain(..n);
        if a.is_established() && b.is_established() {
            return;
        }
    }
});
