//! Which connections a client makes and accepts: `--encryption prefer|require|disable`, and
//! the result reported per peer.

use std::fmt;
use std::str::FromStr;

use crate::CryptoMethod;

/// The user's encryption policy, like libtorrent's `pe_enabled` / `pe_forced` / `pe_disabled`
/// applied to both directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum EncryptionPolicy {
    /// Dial with MSE offering RC4 and plaintext, redial in plaintext if that fails; accept both
    /// kinds of incoming connection; as the receiver, select plaintext when the initiator also
    /// offers it (libtorrent's default, `prefer_rc4` off): the MSE handshake already hides the
    /// protocol from header-matching throttles, and RC4 on every byte halves a 2-core machine's
    /// throughput (measured: 435 MB/s plaintext, 189 MB/s RC4, `benches/transfer.sh`).
    #[default]
    Prefer,
    /// MSE with RC4 only, both ways: plaintext handshakes are refused, and so is an MSE peer
    /// that offers or selects only plaintext.
    Require,
    /// Plaintext BitTorrent only: never dial with MSE, refuse incoming MSE handshakes.
    Disable,
}

impl EncryptionPolicy {
    /// The `crypto_provide` bits an initiator offers (0 under `Disable`: no MSE at all).
    pub fn provide(self) -> u32 {
        match self {
            EncryptionPolicy::Prefer => CryptoMethod::Rc4.bit() | CryptoMethod::Plaintext.bit(),
            EncryptionPolicy::Require => CryptoMethod::Rc4.bit(),
            EncryptionPolicy::Disable => 0,
        }
    }

    /// What a receiver selects from the initiator's `crypto_provide`, or `None` if nothing
    /// offered is acceptable.
    pub fn select(self, provide: u32) -> Option<CryptoMethod> {
        let ours = self.provide();
        [CryptoMethod::Plaintext, CryptoMethod::Rc4]
            .into_iter()
            .find(|m| provide & ours & m.bit() != 0)
    }

    /// Whether outgoing connections start with an MSE handshake.
    pub fn dials_encrypted(self) -> bool {
        self != EncryptionPolicy::Disable
    }

    /// Whether a failed encrypted dial is retried as plaintext.
    pub fn falls_back_to_plaintext(self) -> bool {
        self == EncryptionPolicy::Prefer
    }

    /// Whether an incoming plaintext BitTorrent handshake is accepted.
    pub fn accepts_plaintext(self) -> bool {
        self != EncryptionPolicy::Require
    }

    /// Whether an incoming MSE handshake is answered.
    pub fn accepts_encrypted(self) -> bool {
        self != EncryptionPolicy::Disable
    }

    /// The command-line spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EncryptionPolicy::Prefer => "prefer",
            EncryptionPolicy::Require => "require",
            EncryptionPolicy::Disable => "disable",
        }
    }
}

impl fmt::Display for EncryptionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An encryption policy name that is none of `prefer`, `require`, `disable`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown encryption policy {0:?} (expected prefer, require or disable)")]
pub struct UnknownPolicy(pub String);

impl FromStr for EncryptionPolicy {
    type Err = UnknownPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "prefer" => Ok(EncryptionPolicy::Prefer),
            "require" => Ok(EncryptionPolicy::Require),
            "disable" => Ok(EncryptionPolicy::Disable),
            other => Err(UnknownPolicy(other.to_string())),
        }
    }
}

/// What one connection ended up using, for status and JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encryption {
    /// A plaintext BitTorrent handshake, no MSE.
    Plaintext,
    /// An MSE handshake that selected plaintext: only the handshake is obfuscated.
    MsePlaintext,
    /// An MSE handshake that selected RC4: everything is encrypted.
    Rc4,
}

impl Encryption {
    /// The result of an MSE handshake that selected `method`.
    pub fn of(method: CryptoMethod) -> Self {
        match method {
            CryptoMethod::Plaintext => Encryption::MsePlaintext,
            CryptoMethod::Rc4 => Encryption::Rc4,
        }
    }

    /// The name in status and JSON: `plaintext`, `mse-plaintext` or `rc4`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encryption::Plaintext => "plaintext",
            Encryption::MsePlaintext => "mse-plaintext",
            Encryption::Rc4 => "rc4",
        }
    }
}

impl fmt::Display for Encryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
