//! `https://` trackers end to end: opentracker behind stunnel (a TLS terminator from Debian's
//! packages) with certificates from a CA the test makes, trusted through `SSL_CERT_FILE`. A
//! seeder and a leecher find each other through it; an expired certificate and one made for
//! another host are reported as such in the status, per tracker.

mod support;

use std::time::Duration;

use rcgen::SanType;
use support::tls::{stunnel, stunnel_available, Ca};
use support::*;

const LONG: Duration = Duration::from_secs(120);
fn tracker_line(v: &serde_json::Value, port: u16) -> Option<&serde_json::Value> {
    v["trackers"].as_array()?.iter().find(|t| {
        t["url"]
            .as_str()
            .is_some_and(|u| u.contains(&format!(":{port}/")))
    })
}

#[test]
fn https_tracker_swarm_and_certificate_errors_reported_per_tracker() {
    if !opentracker_available() || !stunnel_available() {
        return;
    }
    let dir = scratch("https_tracker");
    let ca = Ca::new(&dir);
    let localhost = SanType::IpAddress("127.0.0.1".parse().unwrap());
    let good = ca.server(&dir, "good", localhost.clone(), (2020, 2100));
    let expired = ca.server(&dir, "expired", localhost, (2000, 2001));
    let other_host = ca.server(
        &dir,
        "other",
        SanType::DnsName("tracker.example.invalid".try_into().unwrap()),
        (2020, 2100),
    );
    let ot_port = free_port("127.0.0.1");
    let (_s1, good_port) = stunnel(&dir, "good", &good, &format!("127.0.0.1:{ot_port}"));
    let (_s2, expired_port) = stunnel(&dir, "expired", &expired, &format!("127.0.0.1:{ot_port}"));
    let (_s3, other_port) = stunnel(&dir, "other", &other_host, &format!("127.0.0.1:{ot_port}"));
    let url = |p: u16| format!("https://127.0.0.1:{p}/announce");
    // Three tiers: the failing two are tried too (each is its own tier), the good one works.
    let (torrent, data) = make_torrent_with_trackers(
        &dir,
        "h.bin",
        (1 << 20) + 7,
        &[url(expired_port), url(other_port), url(good_port)],
    );
    let _ot = start_opentracker(&dir, ot_port, &[info_hash(&torrent)]);
    // stunnel connects to opentracker from 127.0.0.1, so that is the address the tracker hands
    // out: the seeder listens there.
    let mut seed_cmd = shoal();
    seed_cmd
        .args(["seed", torrent.to_str().unwrap(), data.to_str().unwrap()])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--json",
            "--no-dht",
            "--tracker-timeout",
            "5",
        ])
        .env("XDG_STATE_HOME", dir.join("seed-state"))
        .env("SSL_CERT_FILE", &ca.pem)
        .env_remove("SSL_CERT_DIR");
    let mut seed = Proc::spawn_shoal(seed_cmd, "seed", &dir);
    seed.listening_addr();
    let reported = seed.wait_for(LONG, |v| {
        [expired_port, other_port, good_port]
            .iter()
            .all(|&p| tracker_line(v, p).is_some_and(|t| t["message"] != ""))
            && tracker_line(v, good_port).is_some_and(|t| t["ok"] == true)
    });
    let expired_line = tracker_line(&reported, expired_port).unwrap();
    assert_eq!(expired_line["ok"], false);
    assert!(
        expired_line["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{expired_line}"
    );
    let other_line = tracker_line(&reported, other_port).unwrap();
    assert_eq!(other_line["ok"], false);
    assert!(
        other_line["message"]
            .as_str()
            .unwrap()
            .contains("not valid for 127.0.0.1"),
        "{other_line}"
    );
    // The leecher has no peer but what the HTTPS tracker gives it.
    let out = dir.join("dl");
    let mut dl_cmd = shoal();
    dl_cmd
        .args([
            "download",
            torrent.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .args([
            "--listen",
            "127.0.0.3:0",
            "--json",
            "--no-dht",
            "--tracker-timeout",
            "5",
        ])
        .env("SSL_CERT_FILE", &ca.pem)
        .env_remove("SSL_CERT_DIR");
    let mut dl = Proc::spawn_shoal(dl_cmd, "dl", &dir);
    dl.wait_event("complete", LONG);
    assert!(same_bytes(&data, &out.join("h.bin")));
    // Without the test CA the same tracker is an unknown issuer, said so.
    let mut untrusting = shoal();
    untrusting
        .args(["seed", torrent.to_str().unwrap(), data.to_str().unwrap()])
        .args([
            "--listen",
            "127.0.0.4:0",
            "--json",
            "--no-dht",
            "--tracker-timeout",
            "5",
        ])
        .env("XDG_STATE_HOME", dir.join("seed2-state"))
        .env("SSL_CERT_FILE", dir.join("good.pem"));
    let mut seed2 = Proc::spawn_shoal(untrusting, "seed2", &dir);
    let v = seed2.wait_for(LONG, |v| {
        tracker_line(v, good_port).is_some_and(|t| t["message"] != "")
    });
    let line = tracker_line(&v, good_port).unwrap();
    assert_eq!(line["ok"], false);
    assert!(line["message"].as_str().unwrap().contains("TLS"), "{line}");
}
