use num_bigint::BigUint;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use rc4::consts::U20;
use rc4::{KeyInit, Rc4, StreamCipher};
use shoal_core::Id20;

use crate::*;

const RC4: u32 = 0x02;
const PLAIN: u32 = 0x01;

fn ih(n: u8) -> Id20 {
    Id20([n; 20])
}

/// Both ends of an in-memory connection: what each has sent that the other has not taken.
struct Pipe {
    a_to_b: Vec<u8>,
    b_to_a: Vec<u8>,
}

/// Runs a handshake between `a` (initiator) and `b` (receiver), delivering bytes in random
/// chunks. Returns the bytes each side left unread (the start of the stream after it).
fn run(a: &mut Handshake, b: &mut Handshake, rng: &mut StdRng) -> Result<Pipe, MseError> {
    let mut pipe = Pipe {
        a_to_b: Vec::new(),
        b_to_a: Vec::new(),
    };
    for _ in 0..100_000 {
        if let Some(out) = a.poll_transmit() {
            pipe.a_to_b.extend(out);
        }
        if let Some(out) = b.poll_transmit() {
            pipe.b_to_a.extend(out);
        }
        if a.is_established() && b.is_established() {
            return Ok(pipe);
        }
        for (hs, queue) in [(&mut *b, &mut pipe.a_to_b), (&mut *a, &mut pipe.b_to_a)] {
            if queue.is_empty() || hs.is_established() {
                continue;
            }
            let n = rng.random_range(1..=queue.len().min(700));
            let took = hs.handle_input(&queue[..n])?;
            assert!(took <= n);
            queue.drain(..took);
        }
    }
    panic!("handshake did not finish");
}

fn handshake_bytes() -> Vec<u8> {
    let mut h = PLAINTEXT_PREFIX.to_vec();
    h.extend_from_slice(&[0xAB; 48]);
    h
}

fn exchange(seed: u64, provide: u32, policy: EncryptionPolicy) -> Result<CryptoMethod, MseError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let ia = handshake_bytes();
    let mut a = Handshake::initiator(ih(7), provide, &ia, &mut rng);
    let mut b = Handshake::receiver(vec![ih(1), ih(7), ih(9)], policy, &mut rng);
    let mut pipe = run(&mut a, &mut b, &mut rng)?;
    let mut a = a.into_established().expect("a done");
    let mut b = b.into_established().expect("b done");
    assert_eq!(a.method, b.method);
    assert_eq!(b.info_hash, ih(7));
    assert_eq!(b.initial_payload, ia);
    assert!(a.initial_payload.is_empty());

    // The stream after the handshake: B's unread bytes first, then more each way.
    let mut from_a = b"after the handshake, from A".to_vec();
    a.cipher.encrypt(&mut from_a);
    pipe.a_to_b.extend(from_a);
    b.cipher.decrypt(&mut pipe.a_to_b);
    assert_eq!(pipe.a_to_b, b"after the handshake, from A");
    let mut from_b = vec![0x55u8; 5000];
    b.cipher.encrypt(&mut from_b);
    pipe.b_to_a.extend(from_b);
    a.cipher.decrypt(&mut pipe.b_to_a);
    assert_eq!(pipe.b_to_a, vec![0x55u8; 5000]);
    if a.method == CryptoMethod::Plaintext {
        assert!(a.cipher.encrypt.is_passthrough() && a.cipher.decrypt.is_passthrough());
    }
    Ok(a.method)
}

#[test]
fn rc4_both_roles_over_random_chunks() {
    for seed in 0..20 {
        // Prefer takes plaintext when both are offered (libtorrent's default), RC4 otherwise.
        assert_eq!(
            exchange(seed, RC4 | PLAIN, EncryptionPolicy::Prefer),
            Ok(CryptoMethod::Plaintext)
        );
        assert_eq!(
            exchange(seed, RC4, EncryptionPolicy::Prefer),
            Ok(CryptoMethod::Rc4)
        );
        assert_eq!(
            exchange(seed, RC4, EncryptionPolicy::Require),
            Ok(CryptoMethod::Rc4)
        );
    }
}

#[test]
fn plaintext_selected_when_only_plaintext_offered() {
    for seed in 0..5 {
        assert_eq!(
            exchange(seed, PLAIN, EncryptionPolicy::Prefer),
            Ok(CryptoMethod::Plaintext)
        );
    }
}

#[test]
fn require_refuses_a_plaintext_only_offer() {
    assert_eq!(
        exchange(3, PLAIN, EncryptionPolicy::Require),
        Err(MseError::NoCommonMethod { provide: PLAIN })
    );
    assert_eq!(
        exchange(3, 0x10, EncryptionPolicy::Prefer),
        Err(MseError::NoCommonMethod { provide: 0x10 })
    );
}

#[test]
fn wrong_info_hash_is_refused() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut a = Handshake::initiator(ih(42), RC4, &[], &mut rng);
    let mut b = Handshake::receiver(vec![ih(1), ih(2)], EncryptionPolicy::Prefer, &mut rng);
    assert_eq!(
        run(&mut a, &mut b, &mut rng).err(),
        Some(MseError::UnknownTorrent)
    );
    // Failed for good: more input is refused.
    assert_eq!(b.handle_input(&[0]), Err(MseError::Finished));
}

#[test]
fn empty_initial_payload() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut a = Handshake::initiator(ih(3), RC4, &[], &mut rng);
    let mut b = Handshake::receiver(vec![ih(3)], EncryptionPolicy::Prefer, &mut rng);
    run(&mut a, &mut b, &mut rng).unwrap();
    assert!(b.into_established().unwrap().initial_payload.is_empty());
}

/// A receiver that never finds `HASH('req1', S)` drops the peer after exactly 512 + 20 bytes
/// following `Ya`, whatever the chunking, and buffered no more than that.
#[test]
fn receiver_gives_up_without_sync_hash() {
    let mut rng = StdRng::seed_from_u64(9);
    let a = KeyPair::generate(&mut rng);
    for chunk in [1usize, 7, 100, 2000] {
        let mut b = Handshake::receiver(vec![ih(1)], EncryptionPolicy::Prefer, &mut rng);
        let mut input = a.public().to_vec();
        input.extend(std::iter::repeat_n(0x5Au8, 5000));
        let mut fed = 0;
        let err = loop {
            let end = (fed + chunk).min(input.len());
            match b.handle_input(&input[fed..end]) {
                Ok(n) => {
                    assert_eq!(n, end - fed);
                    fed = end;
                }
                Err(e) => break e,
            }
        };
        assert_eq!(
            err,
            MseError::SyncNotFound {
                limit: REQ1_SCAN_LIMIT
            }
        );
        assert!(fed <= KEY_LEN + REQ1_SCAN_LIMIT, "chunk {chunk}: fed {fed}");
        assert!(fed + chunk >= KEY_LEN + REQ1_SCAN_LIMIT);
    }
}

/// The initiator likewise gives up on the encrypted VC after PadB's 512 bytes plus 8.
#[test]
fn initiator_gives_up_without_vc() {
    let mut rng = StdRng::seed_from_u64(10);
    let b = KeyPair::generate(&mut rng);
    let mut a = Handshake::initiator(ih(1), RC4, &[], &mut rng);
    let mut input = b.public().to_vec();
    input.extend(std::iter::repeat_n(0u8, 4000));
    let mut fed = 0;
    let err = loop {
        match a.handle_input(&input[fed..fed + 3]) {
            Ok(n) => fed += n,
            Err(e) => break e,
        }
    };
    assert_eq!(
        err,
        MseError::VcNotFound {
            limit: VC_SCAN_LIMIT
        }
    );
    assert!(fed <= KEY_LEN + VC_SCAN_LIMIT);
}

/// A peer that answers our key with a plaintext handshake is known for one at its 20th byte.
#[test]
fn plaintext_answer_is_recognised_at_once() {
    let mut rng = StdRng::seed_from_u64(15);
    let mut a = Handshake::initiator(ih(1), RC4, &[], &mut rng);
    assert_eq!(a.handle_input(&PLAINTEXT_PREFIX[..19]), Ok(19));
    assert_eq!(
        a.handle_input(&PLAINTEXT_PREFIX[19..]),
        Err(MseError::PlaintextAnswer)
    );
}

#[test]
fn degenerate_public_keys_are_refused() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut one = [0u8; KEY_LEN];
    one[KEY_LEN - 1] = 1;
    let mut p_minus_1 = PRIME;
    p_minus_1[KEY_LEN - 1] -= 1;
    for key in [[0u8; KEY_LEN], one, p_minus_1, PRIME, [0xFF; KEY_LEN]] {
        let mut b = Handshake::receiver(vec![ih(1)], EncryptionPolicy::Prefer, &mut rng);
        assert_eq!(b.handle_input(&key), Err(MseError::BadPublicKey));
    }
}

/// Plays the receiver by hand to answer with a `crypto_select` the initiator did not offer.
fn answer_with_select(provide: u32, select: u32, pad_d: u16) -> Result<usize, MseError> {
    let mut rng = StdRng::seed_from_u64(12);
    let info_hash = ih(4);
    let mut a = Handshake::initiator(info_hash, provide, &[], &mut rng);
    let ya: [u8; KEY_LEN] = a.poll_transmit().unwrap()[..KEY_LEN].try_into().unwrap();
    let b = KeyPair::generate(&mut rng);
    let s = b.shared_secret(&ya).unwrap();
    let mut reply = b.public().to_vec();
    reply.extend_from_slice(&[9u8; 30]); // PadB
    let mut tail = VC.to_vec();
    tail.extend_from_slice(&select.to_be_bytes());
    tail.extend_from_slice(&pad_d.to_be_bytes());
    Rc4Stream::new(b"keyB", &s, info_hash.as_bytes()).apply(&mut tail);
    reply.extend(tail);
    a.handle_input(&reply)
}

#[test]
fn select_not_offered_is_refused() {
    assert_eq!(
        answer_with_select(RC4, PLAIN, 0),
        Err(MseError::BadSelect {
            select: PLAIN,
            provide: RC4
        })
    );
    assert_eq!(
        answer_with_select(RC4 | PLAIN, RC4 | PLAIN, 0),
        Err(MseError::BadSelect {
            select: 3,
            provide: 3
        })
    );
    assert_eq!(
        answer_with_select(RC4, RC4, 513),
        Err(MseError::PadTooLong { len: 513 })
    );
    // The hand-made receiver is right when it follows the rules.
    assert_eq!(answer_with_select(RC4, RC4, 0), Ok(KEY_LEN + 30 + 14));
}

#[test]
fn garbage_never_panics_and_is_refused() {
    let mut rng = StdRng::seed_from_u64(13);
    for _ in 0..50 {
        let mut junk = vec![0u8; rng.random_range(0..3000)];
        rng.fill_bytes(&mut junk);
        let mut b = Handshake::receiver(vec![ih(1)], EncryptionPolicy::Prefer, &mut rng);
        let mut a = Handshake::initiator(ih(1), RC4, &[], &mut rng);
        let rb = b.handle_input(&junk);
        let ra = a.handle_input(&junk);
        assert!(!b.is_established() && !a.is_established());
        if junk.len() > KEY_LEN + REQ1_SCAN_LIMIT {
            assert!(rb.is_err() && ra.is_err());
        }
    }
}

/// `Rc4Stream` is plain RC4 keyed with SHA-1 output, minus its first 1024 keystream bytes.
#[test]
fn rc4_discards_first_1024_bytes() {
    let key = [0x42u8; 20];
    let mut full = vec![0u8; DISCARD + 64];
    Rc4::<U20>::new(&key.into()).apply_keystream(&mut full);
    let mut ours = vec![0u8; 64];
    Rc4Stream::from_key(&key).apply(&mut ours);
    assert_eq!(ours, full[DISCARD..]);
    assert_ne!(ours, full[..64]);
}

/// RC4 itself against the classic test vector (Key / Plaintext), so the crate is what we think.
#[test]
fn rc4_known_answer() {
    let mut data = *b"Plaintext";
    Rc4::<rc4::consts::U3>::new(b"Key".into()).apply_keystream(&mut data);
    assert_eq!(data, [0xBB, 0xF3, 0x16, 0xE8, 0xD9, 0x40, 0xAF, 0x0A, 0xD3]);
}

#[test]
fn dh_known_answers() {
    // X = 1 and X = 10: Y = 2 and 1024.
    let y1 = KeyPair::from_private(&[1]);
    assert_eq!(y1.public()[..KEY_LEN - 1], [0; KEY_LEN - 1]);
    assert_eq!(y1.public()[KEY_LEN - 1], 2);
    let y10 = KeyPair::from_private(&[10]);
    assert_eq!(y10.public()[KEY_LEN - 2..], [0x04, 0x00]);
    // Both ends agree on S.
    let mut rng = StdRng::seed_from_u64(14);
    let (a, b) = (KeyPair::generate(&mut rng), KeyPair::generate(&mut rng));
    assert_eq!(
        a.shared_secret(b.public()).unwrap(),
        b.shared_secret(a.public()).unwrap()
    );
}

/// A typo in the 96-byte prime would almost surely fail Fermat's test: 2^(P-1) = 1 mod P.
#[test]
fn prime_passes_fermat() {
    let p = BigUint::from_bytes_be(&PRIME);
    assert_eq!(p.bits(), 768);
    assert_eq!(
        BigUint::from(2u32).modpow(&(&p - 1u32), &p),
        BigUint::from(1u32)
    );
    assert_eq!(
        BigUint::from(3u32).modpow(&(&p - 1u32), &p),
        BigUint::from(1u32)
    );
}

#[test]
fn classify_first_bytes() {
    assert_eq!(classify(b""), Incoming::NeedMore);
    assert_eq!(classify(b"\x13BitTorr"), Incoming::NeedMore);
    assert_eq!(classify(PLAINTEXT_PREFIX), Incoming::Plaintext);
    assert_eq!(classify(&handshake_bytes()), Incoming::Plaintext);
    assert_eq!(classify(b"\x13BitTorrent protocoX"), Incoming::Encrypted);
    assert_eq!(classify(&[0x13, b'c']), Incoming::Encrypted);
    assert_eq!(classify(&[0xFF]), Incoming::Encrypted);
}

#[test]
fn policy_parses_and_selects() {
    for p in ["prefer", "require", "disable"] {
        assert_eq!(p.parse::<EncryptionPolicy>().unwrap().as_str(), p);
    }
    assert!("maybe".parse::<EncryptionPolicy>().is_err());
    assert_eq!(
        EncryptionPolicy::Prefer.select(PLAIN),
        Some(CryptoMethod::Plaintext)
    );
    assert_eq!(
        EncryptionPolicy::Prefer.select(RC4 | PLAIN),
        Some(CryptoMethod::Plaintext)
    );
    assert_eq!(
        EncryptionPolicy::Prefer.select(RC4),
        Some(CryptoMethod::Rc4)
    );
    assert_eq!(EncryptionPolicy::Require.select(PLAIN), None);
    assert_eq!(EncryptionPolicy::Disable.select(RC4 | PLAIN), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any seed (so any pad lengths and keys) and any chunking: both ends agree.
    #[test]
    fn any_split_any_pad(seed in any::<u64>(), provide in 1u32..4) {
        let method = exchange(seed, provide, EncryptionPolicy::Prefer).unwrap();
        let expect = if provide & PLAIN != 0 { CryptoMethod::Plaintext } else { CryptoMethod::Rc4 };
        prop_assert_eq!(method, expect);
    }
}
