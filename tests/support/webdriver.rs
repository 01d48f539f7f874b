//! A small W3C WebDriver client: headless Chromium driven by Debian's chromedriver over its HTTP
//! API, with a tiny blocking HTTP/1.1 client (std only). Enough for the web page test: open a
//! page, find elements by CSS selector, click, type (and upload files), read text, run a script,
//! take a screenshot. Every call and every wait is bounded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{free_port, Killed};

/// Debian's Chromium (package `chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's chromedriver (package `chromium-driver`).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The key of an element reference in WebDriver answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long one WebDriver or API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// One HTTP/1.1 request (`Connection: close`), bounded by [`CALL_TIMEOUT`]; returns the status,
/// the header block (lower-cased names) and the body (de-chunked).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(CALL_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(CALL_TIMEOUT)).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    // Read the head, then exactly the body: chromedriver keeps the connection open even when
    // asked to close it, so reading to the end would wait for the timeout.
    let fail = |e: std::io::Error| -> ! { panic!("{method} {path} on {addr}: {e}") };
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut buf).unwrap_or_else(|e| fail(e));
        assert!(
            n > 0,
            "{method} {path}: closed before the HTTP head: {out:?}"
        );
        out.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&out[..head_end]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: bad status line in {head}"));
    let mut headers = String::new();
    let mut length = None;
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            if k == "content-length" {
                length = v.trim().parse::<usize>().ok();
            }
            headers.push_str(&format!("{k}: {}\n", v.trim()));
        }
    }
    let chunked = headers.contains("transfer-encoding: chunked");
    let mut body = out[head_end + 4..].to_vec();
    loop {
        let done = match length {
            _ if method == "HEAD" || status == 204 || status == 304 => true,
            Some(n) if !chunked => body.len() >= n,
            _ if chunked => body.starts_with(b"0\r\n") || body.ends_with(b"\r\n0\r\n\r\n"),
            _ => false,
        };
        if done {
            break;
        }
        let n = s.read(&mut buf).unwrap_or_else(|e| fail(e));
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    if let (Some(n), false) = (length, chunked) {
        body.truncate(n);
    }
    if chunked {
        body = dechunk(&body);
    }
    (status, headers, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if n == 0 || b.len() < eol + 4 + n {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
}

/// An element of the page (a WebDriver element reference).
#[derive(Clone, Debug)]
pub struct Element(String);

/// A headless Chromium session through chromedriver; the session is closed and chromedriver
/// killed when dropped.
pub struct Browser {
    _driver: Killed,
    addr: String,
    session: String,
    /// Where failure screenshots go.
    dir: PathBuf,
}

impl Browser {
    /// Starts chromedriver on a free loopback port (its log in `dir/chromedriver.log`) and a
    /// headless Chromium session with a fresh profile in `dir/chromium-profile`.
    pub fn start(dir: &Path) -> Browser {
        let port = free_port("127.0.0.1");
        let log = dir.join("chromedriver.log");
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Killed(child);
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(&addr).is_ok() {
                let (status, _, body) = http(&addr, "GET", "/status", &[], b"");
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if status == 200 && v["value"]["ready"] == true {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready on {addr} (see {})",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = dir.join("chromium-profile");
        std::fs::create_dir_all(&profile).unwrap();
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": [
                            "--headless=new",
                            // Chromium refuses to run as root with its sandbox (CI runs as root).
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--no-first-run",
                            "--window-size=1280,800",
                            format!("--user-data-dir={}", profile.display()),
                        ],
                    },
                    "timeouts": { "script": 30_000, "pageLoad": 30_000, "implicit": 0 },
                },
            },
        });
        let (status, v) = call(&addr, "POST", "/session", Some(&caps));
        assert_eq!(status, 200, "new session: {v}");
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {v}"))
            .to_string();
        Browser {
            _driver: driver,
            addr,
            session,
            dir: dir.to_path_buf(),
        }
    }

    /// A command of this session; panics with WebDriver's error unless it succeeds.
    fn cmd(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, v) = self.try_cmd(method, path, body);
        assert_eq!(status, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    fn try_cmd(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let path = format!("/session/{}{path}", self.session);
        call(&self.addr, method, &path, body)
    }

    /// Opens `url` (waits for the page to load).
    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(&json!({ "url": url })));
    }

    /// The first element matching the CSS `selector`, if any.
    pub fn find(&self, selector: &str) -> Option<Element> {
        let body = json!({ "using": "css selector", "value": selector });
        let (status, v) = self.try_cmd("POST", "/element", Some(&body));
        match status {
            200 => v["value"][ELEMENT_KEY].as_str().map(|s| Element(s.into())),
            404 if v["value"]["error"] == "no such element" => None,
            _ => panic!("find {selector}: {v}"),
        }
    }

    /// The element matching `selector`, waited for up to `timeout`.
    pub fn wait_find(&self, selector: &str, timeout: Duration) -> Element {
        self.wait(&format!("an element {selector}"), timeout, || {
            self.find(selector)
        })
    }

    /// Calls `probe` until it returns `Some` or `timeout` passes; then fails the test with
    /// `what`, the page's text and a screenshot (`failure.png`).
    pub fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = probe() {
                return v;
            }
            if Instant::now() >= deadline {
                let shot = self.dir.join("failure.png");
                self.screenshot(&shot);
                let text = self.script("return document.body.innerText;", &[]);
                panic!(
                    "timed out after {timeout:?} waiting for {what}; the page says:\n{}\n(screenshot: {})",
                    text.as_str().unwrap_or_default(),
                    shot.display()
                );
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Clicks `el`.
    pub fn click(&self, el: &Element) {
        self.cmd(
            "POST",
            &format!("/element/{}/click", el.0),
            Some(&json!({})),
        );
    }

    /// Empties the input `el`.
    pub fn clear(&self, el: &Element) {
        self.cmd(
            "POST",
            &format!("/element/{}/clear", el.0),
            Some(&json!({})),
        );
    }

    /// Types `text` into `el`; for a file input, `text` is the path of the file to choose.
    pub fn send_keys(&self, el: &Element, text: &str) {
        self.cmd(
            "POST",
            &format!("/element/{}/value", el.0),
            Some(&json!({ "text": text })),
        );
    }

    /// The rendered text of `el` (empty when it is hidden).
    pub fn text(&self, el: &Element) -> String {
        let v = self.cmd("GET", &format!("/element/{}/text", el.0), None);
        v.as_str().unwrap_or_default().to_string()
    }

    /// The DOM property `name` of `el` (e.g. an input's `checked` or `value`).
    pub fn property(&self, el: &Element, name: &str) -> Value {
        self.cmd("GET", &format!("/element/{}/property/{name}", el.0), None)
    }

    /// The text of the first element matching `selector`, if there is one (and it is still
    /// there when read).
    pub fn text_of(&self, selector: &str) -> Option<String> {
        let el = self.find(selector)?;
        let (status, v) = self.try_cmd("GET", &format!("/element/{}/text", el.0), None);
        (status == 200).then(|| v["value"].as_str().unwrap_or_default().to_string())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and returns what it
    /// returns.
    pub fn script(&self, script: &str, args: &[Value]) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// Saves a PNG screenshot of the window to `path`.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let v = self.cmd("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("screenshot is base64");
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing the session quits Chromium; then chromedriver goes (Killed's drop). Nothing
        // here may panic: this also runs while a failed test unwinds.
        if let Ok(mut s) = TcpStream::connect(&self.addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                s,
                "DELETE /session/{} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                self.session, self.addr
            );
            let _ = s.read_to_end(&mut Vec::new());
        }
    }
}

/// One WebDriver call: JSON in, JSON out.
fn call(addr: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let headers: &[(&str, &str)] = if body.is_empty() {
        &[]
    } else {
        &[("Content-Type", "application/json; charset=utf-8")]
    };
    let (status, _, out) = http(addr, method, path, headers, body.as_bytes());
    (status, serde_json::from_slice(&out).unwrap_or(Value::Null))
}
