//! The HTTP/1.1 side of the WebSocket upgrade, parsed here rather than in tungstenite so that
//! every refused request gets a clear HTTP status and text, and so that the parser (which reads
//! bytes straight off the network) can be fuzzed on its own.

use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// The only subprotocol Mles v2 speaks.
pub const SUBPROTOCOL: &str = "mles-websocket";

/// Largest request head (request line and headers) read before refusing with 431.
pub const MAX_REQUEST_HEAD: usize = 8192;

const MAX_HEADERS: usize = 64;

/// A request that may be upgraded to a Mles connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// `Sec-WebSocket-Key`, for the accept hash.
    pub key: String,
    /// The request target: it picks a [`Routes`](crate::Routes) endpoint, else Mles (which
    /// accepts any path).
    pub path: String,
    /// Whether `Sec-WebSocket-Protocol` lists `mles-websocket`.
    pub offers_mles: bool,
}

impl UpgradeRequest {
    /// Refuses the request as a Mles connection unless it offers the Mles subprotocol.
    pub fn require_mles(&self) -> Result<(), Refusal> {
        if self.offers_mles {
            Ok(())
        } else {
            Err(Refusal::NoSubprotocol)
        }
    }
}

/// The parse state of a request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Partial,
    /// A complete head of `head_len` bytes that may be upgraded.
    Complete {
        /// The request.
        request: UpgradeRequest,
        /// Bytes of the head; anything after it already belongs to the WebSocket.
        head_len: usize,
    },
}

/// Why a request is not upgraded; each has an HTTP status and a text for the response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not an HTTP/1.1 request.
    #[error("malformed HTTP request")]
    Malformed,
    /// The head is larger than [`MAX_REQUEST_HEAD`] or has too many headers.
    #[error("request header fields too large")]
    TooLarge,
    /// A method other than GET.
    #[error("only GET can be upgraded to a WebSocket")]
    NotGet,
    /// No `Upgrade: websocket` / `Connection: Upgrade`.
    #[error(
        "this is a Mles v2 WebSocket endpoint: upgrade to websocket with subprotocol mles-websocket"
    )]
    NotWebSocket,
    /// `Sec-WebSocket-Version` missing, repeated or other than 13.
    #[error("unsupported WebSocket version: send exactly one Sec-WebSocket-Version: 13")]
    BadVersion,
    /// No `Sec-WebSocket-Key`.
    #[error("missing Sec-WebSocket-Key")]
    MissingKey,
    /// More than one `Sec-WebSocket-Key`.
    #[error("more than one Sec-WebSocket-Key")]
    DuplicateKey,
    /// A `Sec-WebSocket-Key` that is not the base64 of 16 bytes.
    #[error("malformed Sec-WebSocket-Key: it must be the base64 of 16 bytes")]
    BadKey,
    /// No `Host`, or more than one (HTTP/1.1 requires exactly one).
    #[error("missing or repeated Host header")]
    BadHost,
    /// `Sec-WebSocket-Protocol` does not list `mles-websocket`.
    #[error("missing subprotocol: send Sec-WebSocket-Protocol: mles-websocket")]
    NoSubprotocol,
}

impl Refusal {
    /// The HTTP status code and reason phrase.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            Refusal::Malformed
            | Refusal::MissingKey
            | Refusal::DuplicateKey
            | Refusal::BadKey
            | Refusal::BadHost
            | Refusal::BadVersion
            | Refusal::NoSubprotocol => (400, "Bad Request"),
            Refusal::TooLarge => (431, "Request Header Fields Too Large"),
            Refusal::NotGet => (405, "Method Not Allowed"),
            Refusal::NotWebSocket => (426, "Upgrade Required"),
        }
    }

    /// The complete HTTP response that refuses the request and closes the connection.
    pub fn response(self) -> Vec<u8> {
        let (code, phrase) = self.status();
        let body = format!("{self}\n");
        let mut extra = String::new();
        if matches!(self, Refusal::NotWebSocket | Refusal::BadVersion) {
            // RFC 6455 §4.4: a version refusal names the version the server speaks.
            extra.push_str("Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
        }
        if self == Refusal::NotGet {
            extra.push_str("Allow: GET\r\n");
        }
        format!(
            "HTTP/1.1 {code} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

/// The response to a request on a connection refused because a connection cap is full: 503
/// with `reason`, and when to try again.
pub fn busy_response(reason: &str) -> Vec<u8> {
    let body = format!("{reason}\n");
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nRetry-After: 10\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Whether a comma-separated header value lists `token` (compared ignoring ASCII case when
/// `fold_case`).
fn lists(value: &[u8], token: &str, fold_case: bool) -> bool {
    value.split(|b| *b == b',').any(|item| {
        let item = item.trim_ascii();
        if fold_case {
            item.eq_ignore_ascii_case(token.as_bytes())
        } else {
            item == token.as_bytes()
        }
    })
}

/// Whether `key` is the base64 of exactly 16 bytes (RFC 6455 §4.1): 22 characters of the
/// base64 alphabet, the last of which carries no bits past the 16th byte, then `==`.
fn is_valid_key(key: &[u8]) -> bool {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let [digits @ .., b'=', b'='] = key else {
        return false;
    };
    digits.len() == 22
        && digits.iter().all(|b| ALPHABET.contains(b))
        && b"AQgw".contains(&digits[21])
}

/// The values of every header named `name` (any case), in order.
fn values<'h>(
    headers: &'h [httparse::Header<'h>],
    name: &'static str,
) -> impl Iterator<Item = &'h [u8]> {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// Parses a request head from the bytes read so far.
pub fn parse_request(buf: &[u8]) -> Result<Parsed, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_REQUEST_HEAD => {
            return Err(Refusal::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::TooLarge),
        Err(_) => return Err(Refusal::Malformed),
    };
    if head_len > MAX_REQUEST_HEAD {
        return Err(Refusal::TooLarge);
    }
    if request.version != Some(1) {
        return Err(Refusal::Malformed);
    }
    if request.method != Some("GET") {
        return Err(Refusal::NotGet);
    }
    let headers: &[httparse::Header<'_>] = request.headers;
    let all = |name: &'static str| values(headers, name);
    let upgrade = all("upgrade").any(|v| lists(v, "websocket", true));
    let connection = all("connection").any(|v| lists(v, "upgrade", true));
    if !upgrade || !connection {
        return Err(Refusal::NotWebSocket);
    }
    let mut hosts = all("host");
    if hosts.next().is_none_or(|h| h.trim_ascii().is_empty()) || hosts.next().is_some() {
        return Err(Refusal::BadHost);
    }
    let mut versions = all("sec-websocket-version");
    if versions.next().map(<[u8]>::trim_ascii) != Some(b"13") || versions.next().is_some() {
        return Err(Refusal::BadVersion);
    }
    let mut keys = all("sec-websocket-key");
    let key = keys.next().ok_or(Refusal::MissingKey)?.trim_ascii();
    if keys.next().is_some() {
        return Err(Refusal::DuplicateKey);
    }
    if !is_valid_key(key) {
        return Err(Refusal::BadKey);
    }
    // The alphabet is ASCII, so this is the key as sent.
    let key = String::from_utf8_lossy(key).into_owned();
    let offers_mles = all("sec-websocket-protocol").any(|v| lists(v, SUBPROTOCOL, false));
    Ok(Parsed::Complete {
        request: UpgradeRequest {
            key,
            path: request.path.unwrap_or("/").to_owned(),
            offers_mles,
        },
        head_len,
    })
}

/// A plain GET or HEAD, not a WebSocket upgrade: a request for a page, answered by the
/// listener's [`Pages`](crate::Pages) when it has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Whether the method is HEAD (the response carries no body).
    pub head: bool,
    /// The request target as sent (path and query).
    pub target: String,
    /// Whether `Accept-Encoding` lists `gzip` (with a non-zero quality).
    pub accepts_gzip: bool,
    /// The `If-None-Match` values (entity tags), at most [`MAX_ETAGS`] of them.
    pub if_none_match: Vec<String>,
}

/// Most entity tags of `If-None-Match` looked at.
pub const MAX_ETAGS: usize = 16;

/// Parses a complete request head refused as [`Refusal::NotWebSocket`] or [`Refusal::NotGet`]
/// as a page request: `None` unless it is a well-formed HTTP/1.1 GET or HEAD with one `Host`.
pub fn parse_page_request(buf: &[u8]) -> Option<PageRequest> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head_len) = request.parse(buf).ok()? else {
        return None;
    };
    if head_len > MAX_REQUEST_HEAD || request.version != Some(1) {
        return None;
    }
    let head = match request.method? {
        "GET" => false,
        "HEAD" => true,
        _ => return None,
    };
    let headers: &[httparse::Header<'_>] = request.headers;
    let all = |name: &'static str| values(headers, name);
    let mut hosts = all("host");
    if hosts.next().is_none_or(|h| h.trim_ascii().is_empty()) || hosts.next().is_some() {
        return None;
    }
    let accepts_gzip = all("accept-encoding").any(|v| {
        v.split(|b| *b == b',').any(|item| {
            let mut parts = item.split(|b| *b == b';').map(<[u8]>::trim_ascii);
            let coding = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix(b"q=")
                    .is_some_and(|q| q.iter().all(|b| matches!(b, b'0' | b'.')))
            });
            (coding.eq_ignore_ascii_case(b"gzip") || coding == b"*") && !refused
        })
    });
    let if_none_match = all("if-none-match")
        .flat_map(|v| v.split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|tag| !tag.is_empty())
        .take(MAX_ETAGS)
        .map(|tag| String::from_utf8_lossy(tag).into_owned())
        .collect();
    Some(PageRequest {
        head,
        target: request.path.unwrap_or("/").to_owned(),
        accepts_gzip,
        if_none_match,
    })
}

/// The 101 response accepting `request`, with no extension, echoing `subprotocol` if any
/// (exactly `mles-websocket` for a Mles connection).
pub fn accept_response(request: &UpgradeRequest, subprotocol: Option<&str>) -> Vec<u8> {
    let protocol = subprotocol
        .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
        .unwrap_or_default();
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n{protocol}\r\n",
        derive_accept_key(request.key.as_bytes())
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "GET /any/path?x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: chat, mles-websocket\r\n\
        Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n";

    #[test]
    fn accepts_a_list_holding_the_subprotocol_and_echoes_only_it() {
        let Parsed::Complete { request, head_len } = parse_request(GOOD.as_bytes()).unwrap() else {
            panic!("partial")
        };
        assert_eq!(head_len, GOOD.len());
        assert_eq!(request.path, "/any/path?x=1");
        assert_eq!(request.require_mles(), Ok(()));
        let response = String::from_utf8(accept_response(&request, Some(SUBPROTOCOL))).unwrap();
        // RFC 6455's example key and accept value.
        assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(response.contains("Sec-WebSocket-Protocol: mles-websocket\r\n"));
        assert!(!response.contains("Extensions"));
    }

    #[test]
    fn host_key_and_version_must_each_be_there_once_and_valid() {
        let refused = |head: String| parse_request(head.as_bytes()).unwrap_err();
        assert_eq!(refused(GOOD.replace("Host: h\r\n", "")), Refusal::BadHost);
        assert_eq!(
            refused(GOOD.replace("Host: h\r\n", "Host: \r\n")),
            Refusal::BadHost
        );
        assert_eq!(
            refused(GOOD.replace("Host: h\r\n", "Host: h\r\nHost: i\r\n")),
            Refusal::BadHost
        );
        let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
        assert_eq!(refused(GOOD.replace(key, "")), Refusal::MissingKey);
        assert_eq!(
            refused(GOOD.replace(key, &format!("{key}{key}"))),
            Refusal::DuplicateKey
        );
        for bad in [
            "",
            "x",
            "dGhlIHNhbXBsZSBub25jZQ",
            "dGhlIHNhbXBsZSBub25jZQ=",
            "dGhlIHNhbXBsZSBub25jZR==",
            "dGhlIHNhbXBsZSBub25j!Q==",
            "dGhlIHNhbXBsZSBub25jZQdGhl==",
            "dGhlIHNhbXBsZSBub25jZQ==dGhl",
        ] {
            let head = GOOD.replace(key, &format!("Sec-WebSocket-Key: {bad}\r\n"));
            assert_eq!(refused(head), Refusal::BadKey, "{bad:?}");
        }
        let version = "Sec-WebSocket-Version: 13\r\n";
        assert_eq!(refused(GOOD.replace(version, "")), Refusal::BadVersion);
        assert_eq!(
            refused(GOOD.replace(version, &format!("{version}{version}"))),
            Refusal::BadVersion
        );
    }

    #[test]
    fn plain_gets_and_heads_are_page_requests() {
        let page = parse_page_request(
            b"GET /src/app.js?v=1 HTTP/1.1\r\nHost: h\r\nAccept-Encoding: br, GZIP;q=0.5\r\n\
              If-None-Match: \"a\", W/\"b\"\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            page,
            PageRequest {
                head: false,
                target: "/src/app.js?v=1".into(),
                accepts_gzip: true,
                if_none_match: vec!["\"a\"".into(), "W/\"b\"".into()],
            }
        );
        let head =
            parse_page_request(b"HEAD / HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip;q=0\r\n\r\n")
                .unwrap();
        assert!(head.head && !head.accepts_gzip && head.if_none_match.is_empty());
        assert_eq!(
            parse_page_request(b"POST / HTTP/1.1\r\nHost: h\r\n\r\n"),
            None
        );
        assert_eq!(parse_page_request(b"GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(
            parse_page_request(b"GET / HTTP/1.0\r\nHost: h\r\n\r\n"),
            None
        );
        assert_eq!(parse_page_request(b"GET / HTTP/1.1\r\nHost: h\r\n"), None);
        let many = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nIf-None-Match: {}\r\n\r\n",
            vec!["\"x\""; 100].join(",")
        );
        assert_eq!(
            parse_page_request(many.as_bytes())
                .unwrap()
                .if_none_match
                .len(),
            MAX_ETAGS
        );
    }

    #[test]
    fn partial_until_the_blank_line() {
        assert_eq!(parse_request(&GOOD.as_bytes()[..40]), Ok(Parsed::Partial));
    }

    #[test]
    fn refusals_have_clear_statuses() {
        let mles = |head: &str| match parse_request(head.as_bytes()) {
            Ok(Parsed::Complete { request, .. }) => request.require_mles(),
            other => panic!("{other:?}"),
        };
        let without = GOOD.replace("Sec-WebSocket-Protocol: chat, mles-websocket\r\n", "");
        assert_eq!(mles(&without), Err(Refusal::NoSubprotocol));
        let wrong = GOOD.replace("chat, mles-websocket", "mles-websocket-v3");
        assert_eq!(mles(&wrong), Err(Refusal::NoSubprotocol));
        let plain = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(parse_request(plain.as_bytes()), Err(Refusal::NotWebSocket));
        let post = GOOD.replace("GET", "POST");
        assert_eq!(parse_request(post.as_bytes()), Err(Refusal::NotGet));
        let v8 = GOOD.replace("Version: 13", "Version: 8");
        assert_eq!(parse_request(v8.as_bytes()), Err(Refusal::BadVersion));
        assert_eq!(
            parse_request(b"\x16\x03\x01garbage\r\n\r\n"),
            Err(Refusal::Malformed)
        );
        let huge = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_REQUEST_HEAD));
        assert_eq!(parse_request(huge.as_bytes()), Err(Refusal::TooLarge));
        assert_eq!(Refusal::NoSubprotocol.status().0, 400);
        assert_eq!(Refusal::BadVersion.status().0, 400);
        assert!(
            String::from_utf8(Refusal::BadVersion.response())
                .unwrap()
                .contains("\r\nSec-WebSocket-Version: 13\r\n")
        );
        let response = String::from_utf8(Refusal::NoSubprotocol.response()).unwrap();
        assert!(response.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(response.ends_with("send Sec-WebSocket-Protocol: mles-websocket\n"));
    }
}
