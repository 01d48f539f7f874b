//! MSE/PE against Transmission: Transmission 3.00 with encryption required (`"encryption": 2`
//! in its settings.json) downloads from a shoal seeder that dials it (Transmission never dials
//! loopback peers itself). Under `--encryption require` and `prefer` the bytes arrive and shoal
//! reports the link as RC4; under `disable` Transmission gets nothing.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const TRANSMISSION: &str = "/usr/bin/transmission-cli";

/// Whether transmission-cli is installed; under `CI=true` its absence fails the test.
fn transmission_available() -> bool {
    tool_available(TRANSMISSION, "transmission-cli")
}

/// transmission-cli downloading `torrent` into `out`, listening on 127.0.0.6, encryption
/// required, nothing that leaves loopback (no DHT, LPD, PEX, uTP, port mapping).
fn transmission(dir: &Path, torrent: &Path, out: &Path) -> (Killed, String) {
    let port = free_port("127.0.0.6");
    let config = dir.join("transmission-config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::create_dir_all(out).unwrap();
    let settings = serde_json::json!({
        "bind-address-ipv4": "127.0.0.6",
        "bind-address-ipv6": "::1",
        "peer-port": port,
        "peer-port-random-on-start": false,
        "encryption": 2,
        "dht-enabled": false,
        "lpd-enabled": false,
        "pex-enabled": false,
        "utp-enabled": false,
        "port-forwarding-enabled": false,
        "blocklist-enabled": false,
        "download-dir": out,
        "incomplete-dir-enabled": false,
    });
    std::fs::write(config.join("settings.json"), settings.to_string()).unwrap();
    let log = std::fs::File::create(dir.join("transmission.log")).unwrap();
    let child = Command::new(TRANSMISSION)
        .args(["-g", config.to_str().unwrap(), "-w", out.to_str().unwrap()])
        .args(["-p", &port.to_string(), "-er", "-M"])
        .arg(torrent)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("start transmission-cli");
    let killed = Killed(child);
    let addr = format!("127.0.0.6:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "transmission-cli never listened on {addr}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (killed, addr)
}

/// Waits until `file` holds exactly `data`'s bytes, or `limit` passes.
fn arrives(file: &Path, data: &Path, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if file.exists() && same_bytes(data, file) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    false
}

#[test]
fn transmission_requiring_encryption_downloads_from_a_shoal_seeder() {
    if !transmission_available() {
        return;
    }
    for (policy, served) in [("require", true), ("prefer", true), ("disable", false)] {
        let dir = scratch(&format!("transmission_{policy}"));
        let (torrent, data) = make_torrent(&dir, "tr.bin", (2 << 20) + 3, "32KiB");
        let out = dir.join("out");
        let (_tr, tr_addr) = transmission(&dir, &torrent, &out);
        let mut seed = shoal_seed(
            &torrent,
            &data,
            "127.0.0.2",
            &["--peer", &tr_addr, "--encryption", policy],
            "seed",
            &dir,
        );
        seed.listening_addr();
        // Transmission sends `interested` after its 10 s rechoke: allow for it.
        let limit = Duration::from_secs(if served { 90 } else { 25 });
        let got = arrives(&out.join("tr.bin"), &data, limit);
        assert_eq!(got, served, "policy {policy}");
        if served {
            // The seeder's progress lines (buffered since it started) name the link's encryption.
            let line = seed.wait_for(Duration::from_secs(10), |v| {
                v["peer_encryption"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
            });
            let encryptions: Vec<&str> = line["peer_encryption"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e["encryption"].as_str())
                .collect();
            assert!(
                encryptions.iter().all(|&e| e == "rc4"),
                "policy {policy}: {encryptions:?}"
            );
        }
        seed.term();
        seed.wait_exit(Duration::from_secs(20));
    }
}
