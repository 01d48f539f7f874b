//! Decentralised keyword search end to end, on loopback: a DHT of libtorrent nodes whose
//! seeders announce 50 torrents with distinct names; `shoal index crawl`, bootstrapped from one
//! node, indexes them (BEP 51 samples, `get_peers`, BEP 9 metadata); `shoal search` finds them
//! by two words of their names; and the magnet of a result downloads.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;

/// The crawler's time budget.
const CRAWL_SECONDS: u64 = 45;

#[test]
fn crawl_a_libtorrent_dht_then_search_and_download() {
    if !libtorrent_available() {
        return;
    }
    let dir = scratch("search_lt");
    let mut cmd = Command::new(SYSTEM_PYTHON);
    cmd.arg(repo_root().join("tests/interop/lt_dht_swarm.py"))
        .arg(&dir)
        .args(["--nodes", "24", "--seeders", "5", "--torrents", "50"])
        .args(["--sample-interval", "10", "--timeout", "300"]);
    let mut swarm = Proc::spawn(cmd, "lt-swarm", &dir);
    let boot = swarm.listening_addr();
    swarm.wait_event("ready", Duration::from_secs(120));
    // name -> (info-hash, seeder folder)
    let torrents: HashMap<String, String> = swarm
        .seen
        .iter()
        .filter(|v| v["event"] == "torrent")
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_string(),
                v["info_hash"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(torrents.len(), 50);

    let index = dir.join("index.sqlite");
    let mut crawl = shoal();
    crawl
        .args(["index", "crawl", "--index", index.to_str().unwrap()])
        .args(["--listen", "127.0.0.2:0", "--bootstrap", &boot])
        .args(["--duration", &CRAWL_SECONDS.to_string()])
        .args([
            "--per-node-gap",
            "5",
            "--queries-per-second",
            "10",
            "--json",
        ]);
    let mut crawl = Proc::spawn_shoal(crawl, "crawl", &dir);
    crawl.listening_addr();
    let done = crawl.wait_event("crawl_done", Duration::from_secs(CRAWL_SECONDS + 60));
    assert_eq!(crawl.wait_exit(Duration::from_secs(30)), Some(0));
    let indexed = done["index_size"].as_u64().unwrap();
    for v in crawl.seen.iter().filter(|v| v["event"] == "crawl") {
        println!("crawl status: {v}");
    }
    println!("crawl: {done}");
    assert!(
        indexed >= 45,
        "only {indexed} of 50 torrents indexed: {done}"
    );
    // Every indexed torrent is one of the 50, under its own name (metadata checked).
    for v in crawl.seen.iter().filter(|v| v["event"] == "indexed") {
        let name = v["name"].as_str().unwrap();
        assert_eq!(
            torrents.get(name),
            v["info_hash"].as_str().map(str::to_string).as_ref()
        );
    }

    // Ten of them, each by two words of its name (an adjective and a noun shared with others).
    let mut names: Vec<&String> = torrents.keys().collect();
    names.sort();
    let mut found_magnet = None;
    for name in names.iter().step_by(5).take(10) {
        let words: Vec<&str> = name.split(' ').take(2).collect();
        let out = run_shoal(&[
            "search",
            words[0],
            words[1],
            "--index",
            index.to_str().unwrap(),
            "--limit",
            "5",
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let results: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        let hit = results
            .iter()
            .find(|r| r["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{words:?} did not find {name}: {results:?}"));
        assert_eq!(hit["info_hash"], torrents[name.as_str()].as_str());
        assert_eq!(hit["files"], 1);
        assert!(hit["peers"].as_u64().unwrap() >= 1);
        found_magnet.get_or_insert((
            name.to_string(),
            hit["magnet"].as_str().unwrap().to_string(),
        ));
    }
    // A word that names nothing: success with no result.
    let out = run_shoal(&[
        "search",
        "zeppelin",
        "--index",
        index.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());

    // The magnet of a result downloads, its peers found through the same DHT.
    let (name, magnet) = found_magnet.unwrap();
    let out = dir.join("dl");
    let mut dl = shoal_download(
        Path::new(&magnet),
        &out,
        "127.0.0.3",
        &[],
        &["--dht-bootstrap", &boot],
        "dl",
        &dir,
    );
    let meta = dl.wait_event("metadata", Duration::from_secs(90));
    assert_eq!(meta["name"], name.as_str());
    dl.wait_event("complete", Duration::from_secs(90));
    let seeded = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join(&name))
        .find(|p| p.is_file())
        .expect("the seeder's copy");
    assert!(same_bytes(&seeded, &out.join(&name)));
}

#[test]
fn search_without_an_index_is_one_clear_error() {
    let dir = scratch("search_none");
    let out = run_shoal(&[
        "search",
        "anything",
        "--index",
        dir.join("missing.sqlite").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("shoal index crawl"), "{err}");
    assert!(
        !dir.join("missing.sqlite").exists(),
        "a search creates no file"
    );
}

/// shoal nodes serve BEP 51 to shoal's crawler: shoal seeders announce three torrents to a
/// `shoal dht node`; the crawler, bootstrapped from it, indexes them through the samples shoal
/// nodes hand out and the metadata shoal seeders serve. Needs no libtorrent.
#[test]
fn crawl_a_dht_of_shoal_nodes() {
    let dir = scratch("search_shoal");
    let mut node = shoal();
    node.args(["dht", "node", "--listen", "127.0.0.1:0", "--json"]);
    let mut node = Proc::spawn_shoal(node, "dht-node", &dir);
    let boot = node.listening_addr();
    let names = [
        "quiet river notes.bin",
        "copper kettle recipes.bin",
        "northern lights timelapse.bin",
    ];
    let mut seeds = Vec::new();
    let mut hashes = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (torrent, data) = make_torrent(&dir, name, 200_000 + i * 1000, "16KiB");
        let ip = format!("127.0.0.{}", 30 + i);
        let seed = shoal_seed(
            &torrent,
            &data,
            &ip,
            &["--dht-bootstrap", &boot],
            name,
            &dir,
        );
        seeds.push((seed, ip));
        hashes.push(info_hash(&torrent));
    }
    // Wait (bounded) until each seeder's announce is in the DHT, so the first samples hold it.
    let until = std::time::Instant::now() + Duration::from_secs(90);
    for (h, (_, ip)) in hashes.iter().zip(&seeds) {
        loop {
            let out = run_shoal(&[
                "dht",
                "get-peers",
                h,
                "--bootstrap",
                &boot,
                "--listen",
                "127.0.0.9:0",
                "--json",
            ]);
            if String::from_utf8_lossy(&out.stdout).contains(&format!("\"{ip}:")) {
                break;
            }
            assert!(
                std::time::Instant::now() < until,
                "{h} never appeared in the DHT"
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    // A hostile peer: an info-hash announced for a TCP port that answers with garbage. Its
    // metadata never comes; nothing is stored for it and nothing panics.
    let garbage = std::net::TcpListener::bind("127.0.0.40:0").unwrap();
    let garbage_port = garbage.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in garbage.incoming().flatten() {
            use std::io::Write;
            let _ = s.write_all(&[0xff; 4096]);
        }
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let liar_hash = shoal_core::Id20([0x66; 20]);
    rt.block_on(async {
        let d = shoal_dht::driver::Dht::bind(
            "127.0.0.40:0".parse().unwrap(),
            shoal_dht::DhtConfig::loopback(),
        )
        .await
        .unwrap();
        d.bootstrap(vec![boot.parse().unwrap()]).await.unwrap();
        assert!(
            d.announce(liar_hash, Some(garbage_port))
                .await
                .unwrap()
                .acked
                >= 1
        );
    });
    let index = dir.join("index.sqlite");
    let mut crawl = shoal();
    crawl
        .args(["index", "crawl", "--index", index.to_str().unwrap()])
        .args([
            "--listen",
            "127.0.0.2:0",
            "--bootstrap",
            &boot,
            "--duration",
            "15",
        ])
        .args(["--metadata-timeout", "6", "--json"]);
    let mut crawl = Proc::spawn_shoal(crawl, "crawl", &dir);
    let done = crawl.wait_event("crawl_done", Duration::from_secs(60));
    assert_eq!(crawl.wait_exit(Duration::from_secs(30)), Some(0));
    assert_eq!(done["index_size"], 3, "{done}");
    assert_eq!(done["unique_hashes"], 4, "{done}");
    assert!(done["metadata_failed"].as_u64().unwrap() >= 1, "{done}");
    for (name, h) in names.iter().zip(&hashes) {
        let word = name.split(' ').nth(1).unwrap();
        let out = run_shoal(&["search", word, "--index", index.to_str().unwrap(), "--json"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let first: serde_json::Value =
            serde_json::from_str(text.lines().next().expect("a result")).unwrap();
        assert_eq!(first["info_hash"], h.as_str());
        assert_eq!(first["name"], *name);
    }
    // The human form: name, then size, files and peers, then the magnet.
    let out = run_shoal(&[
        "search",
        "copper",
        "kettle",
        "--index",
        index.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("copper kettle recipes.bin\n"), "{text}");
    assert!(text.contains("magnet:?xt=urn:btih:"), "{text}");
}
