//! The web page at `/`: one HTML file with its CSS and script inline, built into the binary.
//!
//! The page is served without the token (it holds no data); everything it shows comes from the
//! JSON API, which wants `Authorization: Bearer <token>` as for every other client.
//!
//! How the browser holds the token: the user pastes it into a small form, the page keeps it in
//! `sessionStorage` (scoped to this origin — scheme, host *and port* — and gone when the tab
//! closes) and sends it as the `Authorization` header; the event stream is read with `fetch()`
//! instead of `EventSource`, which cannot set headers. We chose this over a session cookie
//! because a cookie is an ambient credential: browsers attach it to every request to the host
//! whatever the port (cookies ignore ports, and `SameSite` counts every port of 127.0.0.1 as the
//! same site), so any other local web service could make requests that carry it, and would be
//! sent it itself. A header is only ever sent by our own script, so there is nothing to forge
//! (no CSRF), the server keeps no sessions, and a request without the token still gets 401. The
//! price — script on the page can read the token — is bounded by never putting network data into
//! the page as HTML (torrent names are set with `textContent`) and by a Content-Security-Policy
//! that lets only this page's own script run (by its hash), talk only to this origin, and forbids
//! framing.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The page.
const INDEX_HTML: &str = include_str!("web/index.html");

/// The Content-Security-Policy of the page: only its own inline script (by hash) and style, no
/// plug-ins, connections to this origin only, no framing, no form posts elsewhere.
fn content_security_policy() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let script = inline_block(INDEX_HTML, "script").unwrap_or_default();
        let style = inline_block(INDEX_HTML, "style").unwrap_or_default();
        format!(
            "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            sha256_source(script),
            sha256_source(style)
        )
    })
}

/// The text between `<tag>` and `</tag>` (the first such block).
fn inline_block<'a>(html: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = html.find(&open)? + open.len();
    let len = html[start..].find(&close)?;
    Some(&html[start..start + len])
}

/// A CSP hash source, `sha256-<base64>`, for an inline block (hashed as the browser sees it:
/// its HTML parser turns CR LF and CR into LF).
fn sha256_source(text: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let digest = sha2::Sha256::digest(text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// `GET /`: the page, with headers that keep it from being framed, sniffed or cached.
pub async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, content_security_policy()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        INDEX_HTML,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_one_script_and_one_style_and_the_policy_names_them() {
        assert_eq!(INDEX_HTML.matches("<script>").count(), 1);
        assert_eq!(INDEX_HTML.matches("<style>").count(), 1);
        let csp = content_security_policy();
        assert!(!csp.contains("unsafe"), "{csp}");
        let script = inline_block(INDEX_HTML, "script").unwrap();
        assert!(script.contains("sessionStorage"));
        assert!(csp.contains(&sha256_source(script)));
    }

    #[test]
    fn sha256_sources_match_a_known_digest() {
        // SHA-256 of the empty string.
        assert_eq!(
            sha256_source(""),
            "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[test]
    fn the_script_never_writes_html() {
        let script = inline_block(INDEX_HTML, "script").unwrap();
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!script.contains(sink), "the page's script uses {sink}");
        }
    }
}
