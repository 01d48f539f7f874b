//! What MSE costs on this machine: one full handshake (both ends, in memory) and RC4 per GiB.
//! `cargo run --release -p shoal-mse --example cost`

use std::time::Instant;

use shoal_core::Id20;
use shoal_mse::{EncryptionPolicy, Handshake, KeyPair, Rc4Stream};

fn main() {
    let mut rng = rand::rng();
    // Diffie-Hellman: one key pair and one shared secret per side per connection.
    let n = 200;
    let b = KeyPair::generate(&mut rng);
    let start = Instant::now();
    for _ in 0..n {
        let a = KeyPair::generate(&mut rng);
        let _ = a.shared_secret(b.public());
    }
    let per_side = start.elapsed().as_secs_f64() / n as f64;
    println!("DH, one side (key pair + secret): {:.0} us", per_side * 1e6);

    // A whole handshake, both roles, in memory.
    let start = Instant::now();
    for _ in 0..n {
        let ih = Id20([7; 20]);
        let mut a =
            Handshake::initiator(ih, EncryptionPolicy::Prefer.provide(), &[0; 68], &mut rng);
        let mut b = Handshake::receiver(vec![ih], EncryptionPolicy::Prefer, &mut rng);
        while !(a.is_established() && b.is_established()) {
            if let Some(out) = a.poll_transmit() {
                b.handle_input(&out).expect("receiver");
            }
            if let Some(out) = b.poll_transmit() {
                a.handle_input(&out).expect("initiator");
            }
        }
    }
    let per_pair = start.elapsed().as_secs_f64() / n as f64;
    println!("handshake, both ends: {:.0} us", per_pair * 1e6);

    // RC4 in place over 1 GiB in 256 KiB batches (the writer's batch size).
    let mut rc4 = Rc4Stream::from_key(&[0x42; 20]);
    let mut buf = vec![0u8; 256 * 1024];
    let start = Instant::now();
    for _ in 0..4096 {
        rc4.apply(&mut buf);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "RC4: {:.2} CPU s/GiB ({:.0} MB/s), one direction",
        secs,
        (1u64 << 30) as f64 / secs / 1e6
    );
}
