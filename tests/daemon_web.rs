//! The daemon's web page in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) driven over WebDriver logs in with the token, adds a torrent by uploading
//! its .torrent file and again by magnet link, sees it under way and then at 100 % and seeding,
//! pauses and resumes it, and removes it (with and then without its data); the API confirms
//! every step. Screenshots of the page are kept in `target/tmp/daemon-web/`: `page.png` (the
//! finished torrent) and `page-downloading.png` (under way, with its rate).

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::webdriver::{http, Browser, CHROMEDRIVER, CHROMIUM};
use support::*;

/// Bound of every wait for the page.
const WAIT: Duration = Duration::from_secs(120);
/// Bound of the waits for what the page shows at once.
const SHORT: Duration = Duration::from_secs(20);

/// A name that would run script if the page ever put it in as HTML.
const NAME: &str = "web <img src=x onerror=window.pwned=1> & co.bin";

/// A running daemon: its process, API address and token.
struct Daemon {
    proc: Proc,
    api: String,
    token: String,
}

impl Daemon {
    fn start(state: &Path, downloads: &Path, logs: &Path) -> Daemon {
        let mut cmd = shoal();
        cmd.args(["daemon", "--api", "127.0.0.1:0", "--json", "--no-dht"])
            .args(["--listen", "127.0.0.4:0"])
            .arg("--state")
            .arg(state)
            .arg("--download-dir")
            .arg(downloads);
        let mut proc = Proc::spawn_shoal(cmd, "daemon", logs);
        let api = proc.wait_for(SHORT, |v| v["event"] == "listening" && v["proto"] == "http")
            ["addr"]
            .as_str()
            .expect("API address")
            .to_string();
        let token = std::fs::read_to_string(state.join("token"))
            .expect("token file")
            .trim()
            .to_string();
        Daemon { proc, api, token }
    }

    /// An API call with the token; returns the status and the JSON body (null if none).
    fn get(&self, path: &str) -> (u16, Value) {
        let auth = format!("Bearer {}", self.token);
        let (status, _, body) = http(&self.api, "GET", path, &[("Authorization", &auth)], b"");
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// A `PATCH` with a JSON body and the token; returns the status.
    fn patch(&self, path: &str, body: &Value) -> u16 {
        let auth = format!("Bearer {}", self.token);
        let headers = [
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ];
        let body = body.to_string();
        http(&self.api, "PATCH", path, &headers, body.as_bytes()).0
    }

    fn torrents(&self) -> Value {
        let (status, v) = self.get("/api/v1/torrents");
        assert_eq!(status, 200, "{v}");
        v
    }

    fn torrent(&self, hash: &str) -> Value {
        let (status, v) = self.get(&format!("/api/v1/torrents/{hash}"));
        assert_eq!(status, 200, "{v}");
        v
    }
}

/// The text of `cell` in the page's row of torrent `hash`.
fn cell(b: &Browser, hash: &str, cell: &str) -> Option<String> {
    b.text_of(&format!("tr[data-hash='{hash}'] {cell}"))
}

/// Waits until the page shows torrent `hash` complete and seeding; returns whether the page
/// showed it part done with a download rate on the way (the list is re-read every 2 s), and
/// then takes a screenshot into `shot` if given.
fn wait_seeding(b: &Browser, hash: &str, shot: Option<&Path>) -> bool {
    let mut seen_moving = false;
    b.wait(&format!("{hash} at 100 % and seeding"), WAIT, || {
        let pct = cell(b, hash, ".pct")?;
        let rate = cell(b, hash, "td.down")?;
        if !seen_moving && pct != "100%" && pct.ends_with('%') && pct != "0.0%" && rate != "0 B/s" {
            seen_moving = true;
            if let Some(shot) = shot {
                b.screenshot(shot);
            }
        }
        (cell(b, hash, "td.state")? == "seeding" && pct == "100%").then_some(())
    });
    seen_moving
}

/// Clicks the row's Pause or Resume button and waits for the state the page and the API show.
fn toggle(b: &Browser, d: &Daemon, hash: &str, label: &str, state: &str) {
    let button = b.wait_find(&format!("tr[data-hash='{hash}'] button.toggle"), SHORT);
    assert_eq!(b.text(&button), label);
    b.click(&button);
    b.wait(&format!("{hash} {state}"), WAIT, || {
        (cell(b, hash, "td.state")? == state).then_some(())
    });
    let v = d.torrent(hash);
    assert_eq!(v["state"], state, "{v}");
}

/// Removes torrent `hash` through the page's dialog and waits until its row is gone.
fn remove(b: &Browser, hash: &str, with_data: bool) {
    b.click(&b.wait_find(&format!("tr[data-hash='{hash}'] button.remove"), SHORT));
    b.wait_find("#remove-dialog[open]", SHORT);
    let checkbox = b.wait_find("#remove-data", SHORT);
    if with_data {
        b.click(&checkbox);
    }
    assert_eq!(b.property(&checkbox, "checked"), with_data);
    b.click(&b.wait_find("#remove-confirm", SHORT));
    b.wait(&format!("the row of {hash} to go"), SHORT, || {
        b.find(&format!("tr[data-hash='{hash}']"))
            .is_none()
            .then_some(())
    });
}

#[test]
fn web_page_adds_completes_pauses_and_removes_torrents_in_chromium() {
    if !tool_available(CHROMIUM, "chromium") || !tool_available(CHROMEDRIVER, "chromium-driver") {
        return;
    }
    let dir = scratch("daemon-web");
    let logs = dir.clone();
    let (_tracker, port) = shoal_tracker(false, "tracker", &logs);
    let announce = format!("http://127.0.0.1:{port}/announce");
    let (torrent, data) = make_torrent_with_trackers(
        &dir,
        NAME,
        3 * 1024 * 1024 + 7,
        std::slice::from_ref(&announce),
    );
    let hash = info_hash(&torrent);
    // A slow seeder (3 MiB at 1 MiB/s), so the page shows the download under way.
    let mut seed = shoal_seed(
        &torrent,
        &dir.join("seed"),
        "127.0.0.2",
        &["--max-upload-rate", "1MiB"],
        "seeder",
        &logs,
    );
    seed.listening_addr();
    let dl = dir.join("dl");
    let mut d = Daemon::start(&dir.join("state"), &dl, &logs);

    // The page needs no token; the API still does, and the page's headers lock it down.
    let (status, headers, page) = http(&d.api, "GET", "/", &[], b"");
    assert_eq!(status, 200);
    assert!(headers.contains("content-type: text/html"), "{headers}");
    assert!(
        headers.contains("content-security-policy: default-src 'none'; script-src 'sha256-"),
        "{headers}"
    );
    assert!(String::from_utf8_lossy(&page).contains("id=\"login-form\""));
    for path in ["/api/v1/torrents", "/api/v1/events", "/api/v1/session"] {
        let (status, _, _) = http(&d.api, "GET", path, &[], b"");
        assert_eq!(status, 401, "{path} without the token");
        let (status, _, _) = http(&d.api, "GET", path, &[("Cookie", "token=x")], b"");
        assert_eq!(status, 401, "{path} with a cookie");
    }

    let b = Browser::start(&dir);
    b.goto(&format!("http://{}/", d.api));

    // A wrong token is refused and the torrents stay hidden; the right one lets us in.
    let token = b.wait_find("#token", SHORT);
    b.send_keys(&token, "not-the-token");
    b.click(&b.wait_find("#login-button", SHORT));
    b.wait("the wrong token refused", SHORT, || {
        b.text_of("#login-error").filter(|t| t.contains("refused"))
    });
    assert_eq!(
        b.script("return document.getElementById('app').hidden;", &[]),
        true
    );
    b.clear(&token);
    b.send_keys(&token, &d.token);
    b.click(&b.wait_find("#login-button", SHORT));
    b.wait_find("#status[data-live='yes']", SHORT);
    assert_eq!(
        b.script("return document.getElementById('login').hidden;", &[]),
        true
    );
    assert!(b.find("#empty").is_some());

    // Upload the .torrent file (WebDriver types the path into the file input).
    b.send_keys(
        &b.wait_find("#torrent-file", SHORT),
        torrent.to_str().unwrap(),
    );
    b.wait_find(&format!("tr[data-hash='{hash}']"), SHORT);
    assert!(
        wait_seeding(&b, &hash, Some(&dir.join("page-downloading.png"))),
        "the page never showed the download under way (part done, with a rate)"
    );
    // The name is shown as text, exactly, and nothing in it ran or became an element.
    assert_eq!(cell(&b, &hash, "td.name").as_deref(), Some(NAME));
    assert_eq!(
        b.script(
            "return [window.pwned === undefined, document.querySelectorAll('#rows img').length];",
            &[]
        ),
        json!([true, 0])
    );
    // The completion came over the event stream (added, state, complete at least).
    let events = b.script(
        "return Number(document.getElementById('status').dataset.events);",
        &[],
    );
    assert!(events.as_u64().unwrap_or(0) >= 2, "events seen: {events}");
    let v = d.torrent(&hash);
    assert_eq!(v["state"], "seeding", "{v}");
    assert_eq!(v["downloaded"], v["total"], "{v}");
    assert!(same_bytes(&data, &dl.join(NAME)));
    // The row shows the torrent's own caps and sequential mode (read-only).
    assert_eq!(cell(&b, &hash, "td.limits").as_deref(), Some("none"));
    let status = d.patch(
        &format!("/api/v1/torrents/{hash}"),
        &json!({"upload_limit": 102_400, "sequential": true}),
    );
    assert_eq!(status, 200);
    b.wait("the row's limits", SHORT, || {
        cell(&b, &hash, "td.limits").filter(|t| t == "up 100.0 KiB/s, sequential")
    });
    let shot = dir.join("page.png");
    b.screenshot(&shot);
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000);
    eprintln!("screenshot of the page: {}", shot.display());

    // Pause and resume from the page.
    toggle(&b, &d, &hash, "Pause", "paused");
    toggle(&b, &d, &hash, "Resume", "seeding");

    // Remove it with its data: gone from the page, the API and the disk; the seed's copy stays.
    remove(&b, &hash, true);
    assert_eq!(d.torrents(), json!([]));
    let (status, _) = d.get(&format!("/api/v1/torrents/{hash}"));
    assert_eq!(status, 404);
    assert!(!dl.join(NAME).exists(), "the data was not deleted");
    assert!(data.exists());

    // Add it again by magnet link: the metadata comes from the seeder, then the data.
    let magnet = format!(
        "magnet:?xt=urn:btih:{hash}&dn=by-magnet&tr={}",
        encode(&announce)
    );
    b.send_keys(&b.wait_find("#magnet", SHORT), &magnet);
    b.click(&b.wait_find("#add-magnet", SHORT));
    b.wait_find(&format!("tr[data-hash='{hash}']"), SHORT);
    wait_seeding(&b, &hash, None);
    assert_eq!(cell(&b, &hash, "td.name").as_deref(), Some(NAME));
    assert!(same_bytes(&data, &dl.join(NAME)));

    // Removed without its data: the file stays.
    remove(&b, &hash, false);
    assert_eq!(d.torrents(), json!([]));
    assert!(same_bytes(&data, &dl.join(NAME)));
    assert!(b.find("#rows tr").is_none());
    assert!(b
        .text_of("#message")
        .is_some_and(|m| m.starts_with("Removed")));

    // The page's event stream stays open; SIGTERM still stops the daemon (the stream ends), and
    // the page sees it gone.
    assert!(b.find("#status[data-live='yes']").is_some());
    d.proc.term();
    assert_eq!(d.proc.wait_exit(Duration::from_secs(15)), Some(0));
    b.wait_find("#status[data-live='no']", SHORT);
}

/// Percent-encodes a URL for a magnet's `tr=`.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (c as char).to_string()
            }
            _ => format!("%{c:02X}"),
        })
        .collect()
}
