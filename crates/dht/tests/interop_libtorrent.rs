//! Interop with libtorrent 2.0 DHT nodes (python3-libtorrent, Debian's /usr/bin/python3), all on
//! 127.0.0.1: a libtorrent node announces and shoal's get_peers finds it; shoal announces and a
//! libtorrent node's get_peers finds it. Skipped (with a message) when python3-libtorrent is not
//! installed, except under `CI=true`, where that is a failure.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shoal_core::Id20;
use shoal_dht::driver::Dht;
use shoal_dht::DhtConfig;
use tokio::sync::mpsc;

const PYTHON: &str = "/usr/bin/python3";
const LT_NODES: usize = 4;

fn libtorrent_available() -> bool {
    Command::new(PYTHON)
        .args(["-c", "import libtorrent"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Kills the Python process (by its handle) when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shoal_and_libtorrent_find_each_other() {
    if !libtorrent_available() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("python3-libtorrent is not installed (apt-get install python3-libtorrent)");
        }
        println!("SKIPPED: python3-libtorrent is not installed");
        return;
    }
    tokio::time::timeout(Duration::from_secs(120), run())
        .await
        .expect("the libtorrent interop test took more than 120 s");
}

async fn run() {
    let dht = Dht::bind("127.0.0.1:0".parse().unwrap(), DhtConfig::loopback())
        .await
        .unwrap();
    let ports: Vec<u16> = (0..LT_NODES).map(|_| free_port()).collect();
    let lt_addrs: Vec<SocketAddr> = ports
        .iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();
    let h1 = Id20([0x31; 20]);
    let h2 = Id20([0x32; 20]);
    let save_dir = std::env::temp_dir().join(format!("shoal-dht-lt-{}", std::process::id()));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/lt_dht.py");
    let port_list: Vec<String> = ports.iter().map(u16::to_string).collect();
    let mut child = Command::new(PYTHON)
        .args([
            script,
            &dht.local_addr().to_string(),
            &port_list.join(","),
            &h1.to_hex(),
            save_dir.to_str().unwrap(),
            &h2.to_hex(),
            "100",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _guard = Guard(child);
    let (tx, mut lines) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    assert_eq!(lines.recv().await.as_deref(), Some("READY"));

    // Join the libtorrent nodes (they also know us as a bootstrap node).
    let mut n = 0;
    for _ in 0..20 {
        n = dht.bootstrap(lt_addrs.clone()).await.unwrap();
        if n >= LT_NODES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("libtorrent interop: shoal table has {n} nodes after bootstrapping");
    assert!(n >= 1);

    // libtorrent announces h1 (its listen port, every second); shoal looks it up.
    let want = lt_addrs[0];
    let mut found = Vec::new();
    for _ in 0..60 {
        let mut rx = dht.get_peers(h1).await.unwrap();
        while let Some(p) = rx.recv().await {
            found.push(p);
        }
        if found.contains(&want) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!("libtorrent interop: shoal get_peers found {found:?}");
    assert!(
        found.contains(&want),
        "shoal did not find libtorrent's peer"
    );

    // shoal announces h2; libtorrent looks it up every second.
    let mut acked = 0;
    let mut seen = false;
    for _ in 0..30 {
        acked = acked.max(dht.announce(h2, Some(8888)).await.unwrap().acked);
        let until = tokio::time::Instant::now() + Duration::from_secs(2);
        while let Ok(Some(line)) = tokio::time::timeout_at(until, lines.recv()).await {
            if line == "FOUND 127.0.0.1:8888" {
                seen = true;
            }
        }
        if seen {
            break;
        }
    }
    println!("libtorrent interop: shoal announce acked by {acked} libtorrent nodes; found by libtorrent: {seen}");
    assert!(seen, "libtorrent did not find shoal's announce");
    let _ = std::fs::remove_dir_all(&save_dir);
}
