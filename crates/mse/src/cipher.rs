//! The stream after the handshake: RC4 with the first 1024 bytes of keystream dropped, or
//! nothing at all when plaintext was selected.

use rc4::consts::U20;
use rc4::{KeyInit, Rc4, StreamCipher};
use sha1::{Digest, Sha1};

use crate::dh::KEY_LEN;

/// Keystream bytes thrown away before the first use (MSE: RC4's first bytes leak its key).
pub const DISCARD: usize = 1024;

/// One direction of RC4, keyed with `HASH(label, S, SKEY)`, its first [`DISCARD`] bytes spent.
pub struct Rc4Stream(Rc4<U20>);

impl std::fmt::Debug for Rc4Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rc4Stream")
    }
}

impl Rc4Stream {
    /// The stream for `label` (`b"keyA"` or `b"keyB"`), secret `S` and info-hash `SKEY`.
    pub fn new(label: &[u8; 4], secret: &[u8; KEY_LEN], skey: &[u8; 20]) -> Self {
        let key: [u8; 20] = Sha1::new()
            .chain_update(label)
            .chain_update(secret)
            .chain_update(skey)
            .finalize()
            .into();
        Self::from_key(&key)
    }

    /// The stream for a raw 20-byte RC4 key, with the discard applied.
    pub fn from_key(key: &[u8; 20]) -> Self {
        let mut rc4 = Rc4::<U20>::new(key.into());
        let mut spent = [0u8; DISCARD];
        rc4.apply_keystream(&mut spent);
        Rc4Stream(rc4)
    }

    /// XORs the next `buf.len()` keystream bytes into `buf` (encrypts or decrypts).
    #[inline]
    pub fn apply(&mut self, buf: &mut [u8]) {
        self.0.apply_keystream(buf);
    }
}

/// What was agreed in the handshake: RC4 or plaintext (crypto_select 0x02 or 0x01).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CryptoMethod {
    /// The handshake was obfuscated; the payload after it is plaintext.
    Plaintext,
    /// The payload is RC4-encrypted both ways.
    Rc4,
}

impl CryptoMethod {
    /// This method's bit in `crypto_provide` / `crypto_select`.
    pub const fn bit(self) -> u32 {
        match self {
            CryptoMethod::Plaintext => 0x01,
            CryptoMethod::Rc4 => 0x02,
        }
    }
}

/// One direction of the established stream. For plaintext it does nothing, so a plaintext
/// connection pays no copy and no pass over its bytes. The RC4 state (256 bytes and more) is
/// boxed so that a connection handed around in events stays small.
#[derive(Debug, Default)]
pub struct HalfCipher(Option<Box<Rc4Stream>>);

impl HalfCipher {
    /// A direction that leaves bytes as they are.
    pub fn passthrough() -> Self {
        HalfCipher(None)
    }

    /// Encrypts (or decrypts: the same XOR) `buf` in place.
    #[inline]
    pub fn apply(&mut self, buf: &mut [u8]) {
        if let Some(rc4) = &mut self.0 {
            rc4.apply(buf);
        }
    }

    /// Whether this direction changes bytes at all.
    pub fn is_passthrough(&self) -> bool {
        self.0.is_none()
    }
}

/// Both directions of an established connection.
#[derive(Debug, Default)]
pub struct Cipher {
    /// Applied to bytes we send.
    pub encrypt: HalfCipher,
    /// Applied to bytes we receive.
    pub decrypt: HalfCipher,
}

impl Cipher {
    /// A passthrough in both directions (plaintext BitTorrent, or MSE with plaintext selected).
    pub fn plaintext() -> Self {
        Cipher::default()
    }

    pub(crate) fn rc4(encrypt: Rc4Stream, decrypt: Rc4Stream) -> Self {
        Cipher {
            encrypt: HalfCipher(Some(Box::new(encrypt))),
            decrypt: HalfCipher(Some(Box::new(decrypt))),
        }
    }

    /// Encrypts bytes about to be sent, in place.
    #[inline]
    pub fn encrypt(&mut self, buf: &mut [u8]) {
        self.encrypt.apply(buf);
    }

    /// Decrypts bytes just received, in place.
    #[inline]
    pub fn decrypt(&mut self, buf: &mut [u8]) {
        self.decrypt.apply(buf);
    }

    /// The two directions apart, for a reader task and a writer task: `(encrypt, decrypt)`.
    pub fn split(self) -> (HalfCipher, HalfCipher) {
        (self.encrypt, self.decrypt)
    }
}
