//! TLS for the tests: a CA of their own (rcgen) and stunnel (Debian's TLS terminator) in front of
//! a plain server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};

use super::{free_port, tool_available, wait_listening, Killed};

pub const STUNNEL: &str = "/usr/bin/stunnel4";

/// Whether stunnel is installed; under `CI=true` its absence fails the test.
pub fn stunnel_available() -> bool {
    tool_available(STUNNEL, "stunnel4")
}

/// The test CA: its certificate in `dir/ca.pem`, and the means to sign server certificates.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    /// The CA certificate (give it to shoal as `SSL_CERT_FILE`).
    pub pem: PathBuf,
}

impl Ca {
    pub fn new(dir: &Path) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "shoal test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem = dir.join("ca.pem");
        std::fs::write(&pem, cert.pem()).unwrap();
        Ca { cert, key, pem }
    }

    /// A server certificate and key (one PEM file, as stunnel takes it) for `san`, valid between
    /// the given years.
    pub fn server(&self, dir: &Path, name: &str, san: SanType, years: (i32, i32)) -> PathBuf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.subject_alt_names = vec![san];
        params.not_before = rcgen::date_time_ymd(years.0, 1, 1);
        params.not_after = rcgen::date_time_ymd(years.1, 1, 1);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, cert.pem() + &key.serialize_pem()).unwrap();
        path
    }
}

/// stunnel on a free loopback port, terminating TLS with `cert` and passing the bytes on to
/// `backend` (`IP:PORT`).
pub fn stunnel(dir: &Path, name: &str, cert: &Path, backend: &str) -> (Killed, u16) {
    let port = free_port("127.0.0.1");
    let conf = dir.join(format!("{name}.conf"));
    std::fs::write(
        &conf,
        format!(
            "foreground = yes\npid =\nsyslog = no\noutput = {}\n[service]\naccept = 127.0.0.1:{port}\n\
             connect = {backend}\ncert = {}\n",
            dir.join(format!("{name}.log")).display(),
            cert.display()
        ),
    )
    .unwrap();
    let child = Command::new(STUNNEL)
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start stunnel");
    let killed = Killed(child);
    wait_listening(&format!("127.0.0.1:{port}"));
    (killed, port)
}
