//! The MSE handshake as a state machine for either role, holding no socket.
//!
//! A driver calls, in a loop: [`Handshake::poll_transmit`] and sends what it returns, reads
//! from the socket, hands the bytes to [`Handshake::handle_input`] (which says how many it
//! took: it stops exactly where the handshake ends), until [`Handshake::is_established`]. Then
//! [`Handshake::into_established`] gives the [`Cipher`] for the rest of the stream; bytes
//! `handle_input` did not take are the start of that stream, to be decrypted with it.
//!
//! ```text
//! A -> B  Ya PadA
//! B -> A  Yb PadB
//! A -> B  HASH('req1',S) HASH('req2',SKEY)^HASH('req3',S) E(VC provide len(PadC) PadC len(IA) IA)
//! B -> A  E(VC select len(PadD) PadD)     then the payload, RC4 or plaintext as selected
//! ```

use rand::Rng;
use sha1::{Digest, Sha1};
use shoal_core::Id20;

use crate::cipher::{Cipher, CryptoMethod, Rc4Stream};
use crate::detect::{classify, Incoming};
use crate::dh::{KeyPair, KEY_LEN};
use crate::{EncryptionPolicy, MseError};

/// Longest padding of any kind (PadA–PadD), so the longest stretch either side scans for the
/// other's synchronisation bytes.
pub const MAX_PAD: usize = 512;
/// The verification constant: eight zero bytes, encrypted.
pub const VC: [u8; 8] = [0; 8];
/// The receiver gives up on finding `HASH('req1', S)` after this many bytes following `Ya`.
pub const REQ1_SCAN_LIMIT: usize = MAX_PAD + 20;
/// The initiator gives up on finding the encrypted VC after this many bytes following `Yb`.
pub const VC_SCAN_LIMIT: usize = MAX_PAD + VC.len();
/// Bytes of `VC`, `crypto_provide` and `len(PadC)`.
const PROVIDE_LEN: usize = 8 + 4 + 2;
/// Bytes of `crypto_select` and `len(PadD)` (after the VC the initiator scanned for).
const SELECT_LEN: usize = 4 + 2;

fn hash(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// `HASH('req2', SKEY)`: what a receiver compares `req2 xor req3` with for each torrent.
pub fn req2_hash(info_hash: &Id20) -> [u8; 20] {
    hash(&[b"req2", info_hash.as_bytes()])
}

fn xor20(a: &[u8; 20], b: &[u8; 20]) -> [u8; 20] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// Which end of the connection we are, and what that end knows before it starts.
#[derive(Debug)]
enum Role {
    Initiator {
        info_hash: Id20,
        provide: u32,
        initial_payload: Vec<u8>,
    },
    Receiver {
        info_hashes: Vec<Id20>,
        policy: EncryptionPolicy,
    },
}

/// Where the handshake stands: what the next input bytes are.
#[derive(Debug)]
enum State {
    /// The peer's 96-byte public key.
    Key,
    /// Receiver: PadA, then `HASH('req1', S)` ends somewhere in the next 532 bytes.
    ScanReq1 { sync: [u8; 20] },
    /// Receiver: `HASH('req2', SKEY) xor HASH('req3', S)`.
    Req2,
    /// Receiver: encrypted `VC`, `crypto_provide`, `len(PadC)`.
    Provide,
    /// Receiver: this many more bytes of PadC.
    PadC(usize),
    /// Receiver: encrypted `len(IA)`.
    IaLen,
    /// Receiver: this many bytes of IA.
    Ia(usize),
    /// Initiator: PadB, then the encrypted VC ends somewhere in the next 520 bytes.
    ScanVc { pattern: [u8; 8] },
    /// Initiator: encrypted `crypto_select`, `len(PadD)`.
    Select,
    /// Initiator: this many more bytes of PadD.
    PadD(usize),
    /// Finished; the cipher is ready.
    Done,
    /// Failed; the connection is to be closed.
    Failed,
}

/// A finished handshake: the agreed method, the torrent, and the stream cipher.
#[derive(Debug)]
pub struct Established {
    /// RC4 or plaintext.
    pub method: CryptoMethod,
    /// The torrent: the initiator's own, or the one the receiver identified.
    pub info_hash: Id20,
    /// Encrypts what we send and decrypts what we receive from here on.
    pub cipher: Cipher,
    /// Receiver only: the initiator's IA, decrypted (normally its BitTorrent handshake). It
    /// comes before anything still unread on the socket.
    pub initial_payload: Vec<u8>,
}

/// One MSE handshake, initiator or receiver. See the module documentation for the call order.
pub struct Handshake {
    role: Role,
    state: State,
    keys: KeyPair,
    secret: [u8; KEY_LEN],
    /// Bytes gathered for the current state; never more than the state's bound.
    buf: Vec<u8>,
    /// Bytes to send, in order.
    out: Vec<u8>,
    /// Receiver: `Yb` and PadB, held until `Ya` arrives.
    hello: Vec<u8>,
    encrypt: Option<Rc4Stream>,
    decrypt: Option<Rc4Stream>,
    method: Option<CryptoMethod>,
    info_hash: Option<Id20>,
    initial_payload: Vec<u8>,
    pad_c_len: usize,
    pad_d_len: usize,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys, the secret and the RC4 states stay out of logs.
        f.debug_struct("Handshake")
            .field("initiator", &matches!(self.role, Role::Initiator { .. }))
            .field("state", &self.state)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

fn random_pad<R: Rng + ?Sized>(rng: &mut R) -> Vec<u8> {
    let mut pad = vec![0u8; rng.random_range(0..=MAX_PAD)];
    rng.fill_bytes(&mut pad);
    pad
}

impl Handshake {
    /// The dialling side, for `info_hash`, offering the methods in `provide` (see
    /// [`EncryptionPolicy::provide`]) and sending `initial_payload` (normally our BitTorrent
    /// handshake; at most 65535 bytes, longer is cut) inside the handshake. `Ya` and PadA are
    /// ready to send at once.
    pub fn initiator<R: Rng + ?Sized>(
        info_hash: Id20,
        provide: u32,
        initial_payload: &[u8],
        rng: &mut R,
    ) -> Self {
        let mut hs = Self::new(
            Role::Initiator {
                info_hash,
                provide,
                initial_payload: initial_payload[..initial_payload.len().min(u16::MAX as usize)]
                    .to_vec(),
            },
            rng,
        );
        hs.info_hash = Some(info_hash);
        hs
    }

    /// The accepting side: the peer's torrent must be one of `info_hashes`; the method is
    /// chosen by `policy` from what the peer offers. Nothing is sent before `Ya` arrives.
    pub fn receiver<R: Rng + ?Sized>(
        info_hashes: Vec<Id20>,
        policy: EncryptionPolicy,
        rng: &mut R,
    ) -> Self {
        Self::new(
            Role::Receiver {
                info_hashes,
                policy,
            },
            rng,
        )
    }

    fn new<R: Rng + ?Sized>(role: Role, rng: &mut R) -> Self {
        let keys = KeyPair::generate(rng);
        let mut hello = keys.public().to_vec();
        hello.extend_from_slice(&random_pad(rng));
        let pad_c_len = rng.random_range(0..=MAX_PAD);
        let pad_d_len = rng.random_range(0..=MAX_PAD);
        let mut hs = Handshake {
            role,
            state: State::Key,
            keys,
            secret: [0; KEY_LEN],
            buf: Vec::with_capacity(KEY_LEN),
            out: Vec::new(),
            hello: Vec::new(),
            encrypt: None,
            decrypt: None,
            method: None,
            info_hash: None,
            initial_payload: Vec::new(),
            pad_c_len,
            pad_d_len,
        };
        // The initiator speaks first; the receiver answers once it has `Ya`.
        if matches!(hs.role, Role::Initiator { .. }) {
            hs.out = hello;
        } else {
            hs.hello = hello;
        }
        hs
    }

    /// Bytes to send to the peer, in order, or `None` if there is nothing new.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.out.is_empty()).then(|| std::mem::take(&mut self.out))
    }

    /// Whether the handshake is over; [`Handshake::into_established`] then succeeds.
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The agreed cipher and torrent, once [`Handshake::is_established`]; `None` before.
    pub fn into_established(self) -> Option<Established> {
        if !self.is_established() {
            return None;
        }
        let method = self.method?;
        let cipher = match (method, self.encrypt, self.decrypt) {
            (CryptoMethod::Rc4, Some(e), Some(d)) => Cipher::rc4(e, d),
            _ => Cipher::plaintext(),
        };
        Some(Established {
            method,
            info_hash: self.info_hash?,
            cipher,
            initial_payload: self.initial_payload,
        })
    }

    /// Feeds bytes received from the peer. Returns how many were taken: all of them until the
    /// handshake ends, then none (the rest belong to the stream after it). Any error is final.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<usize, MseError> {
        match self.state {
            State::Done => return Ok(0),
            State::Failed => return Err(MseError::Finished),
            _ => {}
        }
        let mut rest = data;
        while !rest.is_empty() && !self.is_established() {
            if let Err(e) = self.step(&mut rest) {
                self.state = State::Failed;
                self.buf = Vec::new();
                return Err(e);
            }
        }
        Ok(data.len() - rest.len())
    }

    /// Moves bytes from `rest` into `buf` until it holds `need`; true once it does.
    fn fill(&mut self, rest: &mut &[u8], need: usize) -> bool {
        let take = need.saturating_sub(self.buf.len()).min(rest.len());
        self.buf.extend_from_slice(&rest[..take]);
        *rest = &rest[take..];
        self.buf.len() == need
    }

    /// Scans byte by byte for `pattern` at the end of `buf`, taking nothing past it, so the
    /// next state starts exactly after the synchronisation bytes. Ok(true) once found.
    fn scan(&mut self, rest: &mut &[u8], pattern: &[u8], limit: usize) -> Result<bool, usize> {
        while let Some((&b, tail)) = rest.split_first() {
            if self.buf.len() == limit {
                return Err(limit);
            }
            self.buf.push(b);
            *rest = tail;
            if self.buf.ends_with(pattern) {
                self.buf.clear();
                return Ok(true);
            }
        }
        if self.buf.len() == limit {
            return Err(limit);
        }
        Ok(false)
    }

    /// Decrypts `len` bytes of `rest` without keeping them (padding), returns how many.
    fn skip(&mut self, rest: &mut &[u8], len: usize) -> usize {
        let n = len.min(rest.len());
        let mut scratch = rest[..n].to_vec();
        if let Some(d) = &mut self.decrypt {
            d.apply(&mut scratch);
        }
        *rest = &rest[n..];
        n
    }

    fn decrypt_buf(&mut self) {
        if let Some(d) = &mut self.decrypt {
            d.apply(&mut self.buf);
        }
    }

    fn next(&mut self, state: State) {
        self.buf.clear();
        self.state = state;
    }

    /// Advances by one state with what `rest` holds.
    fn step(&mut self, rest: &mut &[u8]) -> Result<(), MseError> {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::Key => {
                let full = self.fill(rest, KEY_LEN);
                // A plaintext-only peer answers our key with its BitTorrent handshake: say so
                // at once, so the caller can redial in plaintext without waiting for a timeout.
                if matches!(self.role, Role::Initiator { .. })
                    && classify(&self.buf) == Incoming::Plaintext
                {
                    return Err(MseError::PlaintextAnswer);
                }
                if !full {
                    self.state = State::Key;
                    return Ok(());
                }
                let theirs: [u8; KEY_LEN] = self.buf[..].try_into().unwrap_or([0; KEY_LEN]);
                self.secret = self.keys.shared_secret(&theirs)?;
                match &self.role {
                    Role::Receiver { .. } => {
                        self.out.append(&mut self.hello);
                        let sync = hash(&[b"req1", &self.secret]);
                        self.next(State::ScanReq1 { sync });
                    }
                    Role::Initiator { .. } => self.send_request(),
                }
            }
            State::ScanReq1 { sync } => match self.scan(rest, &sync, REQ1_SCAN_LIMIT) {
                Ok(true) => self.next(State::Req2),
                Ok(false) => self.state = State::ScanReq1 { sync },
                Err(limit) => return Err(MseError::SyncNotFound { limit }),
            },
            State::Req2 => {
                if !self.fill(rest, 20) {
                    self.state = State::Req2;
                    return Ok(());
                }
                let got: [u8; 20] = self.buf[..].try_into().unwrap_or([0; 20]);
                let wanted = xor20(&got, &hash(&[b"req3", &self.secret]));
                let Role::Receiver { info_hashes, .. } = &self.role else {
                    return Err(MseError::Finished);
                };
                let info_hash = *info_hashes
                    .iter()
                    .find(|ih| req2_hash(ih) == wanted)
                    .ok_or(MseError::UnknownTorrent)?;
                self.info_hash = Some(info_hash);
                let skey = info_hash.as_bytes();
                self.decrypt = Some(Rc4Stream::new(b"keyA", &self.secret, skey));
                self.encrypt = Some(Rc4Stream::new(b"keyB", &self.secret, skey));
                self.next(State::Provide);
            }
            State::Provide => {
                if !self.fill(rest, PROVIDE_LEN) {
                    self.state = State::Provide;
                    return Ok(());
                }
                self.decrypt_buf();
                if self.buf[..8] != VC {
                    return Err(MseError::BadVerificationConstant);
                }
                let provide =
                    u32::from_be_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]]);
                let pad = u16::from_be_bytes([self.buf[12], self.buf[13]]) as usize;
                if pad > MAX_PAD {
                    return Err(MseError::PadTooLong { len: pad });
                }
                let Role::Receiver { policy, .. } = &self.role else {
                    return Err(MseError::Finished);
                };
                let method = policy
                    .select(provide)
                    .ok_or(MseError::NoCommonMethod { provide })?;
                self.method = Some(method);
                self.next(State::PadC(pad));
            }
            State::PadC(left) => {
                let left = left - self.skip(rest, left);
                self.next(if left == 0 {
                    State::IaLen
                } else {
                    State::PadC(left)
                });
            }
            State::IaLen => {
                if !self.fill(rest, 2) {
                    self.state = State::IaLen;
                    return Ok(());
                }
                self.decrypt_buf();
                let len = u16::from_be_bytes([self.buf[0], self.buf[1]]) as usize;
                self.next(State::Ia(len));
                if len == 0 {
                    self.finish_receiver();
                }
            }
            State::Ia(len) => {
                if !self.fill(rest, len) {
                    self.state = State::Ia(len);
                    return Ok(());
                }
                self.decrypt_buf();
                self.initial_payload = std::mem::take(&mut self.buf);
                self.finish_receiver();
            }
            State::ScanVc { pattern } => match self.scan(rest, &pattern, VC_SCAN_LIMIT) {
                Ok(true) => self.next(State::Select),
                Ok(false) => self.state = State::ScanVc { pattern },
                Err(limit) => return Err(MseError::VcNotFound { limit }),
            },
            State::Select => {
                if !self.fill(rest, SELECT_LEN) {
                    self.state = State::Select;
                    return Ok(());
                }
                self.decrypt_buf();
                let select =
                    u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                let pad = u16::from_be_bytes([self.buf[4], self.buf[5]]) as usize;
                let Role::Initiator { provide, .. } = &self.role else {
                    return Err(MseError::Finished);
                };
                let provide = *provide;
                let method = [CryptoMethod::Rc4, CryptoMethod::Plaintext]
                    .into_iter()
                    .find(|m| select == m.bit() && provide & select != 0)
                    .ok_or(MseError::BadSelect { select, provide })?;
                if pad > MAX_PAD {
                    return Err(MseError::PadTooLong { len: pad });
                }
                self.method = Some(method);
                self.next(if pad == 0 {
                    State::Done
                } else {
                    State::PadD(pad)
                });
            }
            State::PadD(left) => {
                let left = left - self.skip(rest, left);
                self.next(if left == 0 {
                    State::Done
                } else {
                    State::PadD(left)
                });
            }
            State::Done => self.state = State::Done,
            State::Failed => return Err(MseError::Finished),
        }
        Ok(())
    }

    /// Initiator, once `Yb` is in: step 3 (sync hashes, encrypted offer, PadC, IA), then scan
    /// for the receiver's encrypted VC.
    fn send_request(&mut self) {
        let Role::Initiator {
            info_hash,
            provide,
            initial_payload,
        } = &mut self.role
        else {
            return;
        };
        let skey = *info_hash.as_bytes();
        let mut encrypt = Rc4Stream::new(b"keyA", &self.secret, &skey);
        let mut decrypt = Rc4Stream::new(b"keyB", &self.secret, &skey);
        self.out.extend_from_slice(&hash(&[b"req1", &self.secret]));
        self.out.extend_from_slice(&xor20(
            &hash(&[b"req2", &skey]),
            &hash(&[b"req3", &self.secret]),
        ));
        let start = self.out.len();
        self.out.extend_from_slice(&VC);
        self.out.extend_from_slice(&provide.to_be_bytes());
        self.out
            .extend_from_slice(&(self.pad_c_len as u16).to_be_bytes());
        self.out.resize(self.out.len() + self.pad_c_len, 0);
        let ia = std::mem::take(initial_payload);
        self.out.extend_from_slice(&(ia.len() as u16).to_be_bytes());
        self.out.extend_from_slice(&ia);
        encrypt.apply(&mut self.out[start..]);
        let mut pattern = VC;
        decrypt.apply(&mut pattern);
        self.encrypt = Some(encrypt);
        self.decrypt = Some(decrypt);
        self.next(State::ScanVc { pattern });
    }

    /// Receiver, once IA is in: step 4 (encrypted VC, our choice, PadD). The handshake is over.
    fn finish_receiver(&mut self) {
        let select = self.method.map_or(0, CryptoMethod::bit);
        let start = self.out.len();
        self.out.extend_from_slice(&VC);
        self.out.extend_from_slice(&select.to_be_bytes());
        self.out
            .extend_from_slice(&(self.pad_d_len as u16).to_be_bytes());
        self.out.resize(self.out.len() + self.pad_d_len, 0);
        if let Some(e) = &mut self.encrypt {
            e.apply(&mut self.out[start..]);
        }
        self.next(State::Done);
    }
}
