//! A small synchronous HTTP/1.1 client for the OAuth2 endpoints, over the
//! TLS client mailsend already has (certificate and host name verified,
//! `ca_file` trusted too). One request per connection, bounded by the
//! timeout; plain http only where `provider::check_url` allowed it.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use oauth2::{HttpRequest, HttpResponse};

use crate::smtp::{Class, SmtpError, TlsConfig};

/// Responses larger than this are refused (a token answer is a few KiB).
const MAX_RESPONSE: usize = 1 << 20;

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpFailure {
    /// The certificate was not trusted (or did not name the host).
    Untrusted,
    /// Unreachable, reset, timed out: may work later.
    Network,
    /// Not HTTP, or too large.
    Protocol,
    /// A bad `ca_file`, a bad URL.
    Config,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct HttpError {
    pub kind: HttpFailure,
    pub message: String,
}

fn fail(kind: HttpFailure, message: impl Into<String>) -> HttpError {
    HttpError {
        kind,
        message: message.into(),
    }
}

pub struct Http {
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    /// The trust roots, loaded at the first https request and kept (a
    /// device sign-in polls the token endpoint many times).
    pub tls: std::cell::OnceCell<TlsConfig>,
}

impl Http {
    fn tls(&self) -> Result<&TlsConfig, HttpError> {
        if let Some(tls) = self.tls.get() {
            return Ok(tls);
        }
        let tls = TlsConfig::new(self.ca_file.as_deref())
            .map_err(|e| fail(HttpFailure::Config, format!("{e:#}")))?;
        Ok(self.tls.get_or_init(|| tls))
    }
}

impl Http {
    /// Sends `request` and reads the whole response.
    pub fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let uri = request.uri().clone();
        let host = uri
            .host()
            .ok_or_else(|| fail(HttpFailure::Config, format!("no host in {uri}")))?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let deadline = Instant::now() + self.timeout;
        let tcp = connect(bare, port, self.timeout)?;
        let head = request_head(&request, host, port, https);
        let mut body = head.into_bytes();
        body.extend_from_slice(request.body());
        let raw = if https {
            let stream = self
                .tls()?
                .connect(bare, tcp, self.timeout)
                .map_err(|e| from_smtp(&e, bare))?;
            exchange(stream, &body, deadline, bare)?
        } else {
            exchange(tcp, &body, deadline, bare)?
        };
        parse_response(&raw).ok_or_else(|| {
            fail(
                HttpFailure::Protocol,
                format!("{bare} did not answer with HTTP"),
            )
        })
    }
}

fn from_smtp(e: &SmtpError, host: &str) -> HttpError {
    let kind = match e.class() {
        Class::Trust => HttpFailure::Untrusted,
        Class::Config => HttpFailure::Config,
        Class::Protocol => HttpFailure::Protocol,
        _ => HttpFailure::Network,
    };
    fail(kind, format!("{host}: {e}"))
}

fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, HttpError> {
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| fail(HttpFailure::Network, format!("cannot resolve {host}: {e}")))?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(tcp) => {
                let _ = tcp.set_read_timeout(Some(timeout));
                let _ = tcp.set_write_timeout(Some(timeout));
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(fail(
        HttpFailure::Network,
        match last {
            Some(e) => format!("cannot connect to {host}:{port}: {e}"),
            None => format!("cannot resolve {host}"),
        },
    ))
}

fn request_head(request: &HttpRequest, host: &str, port: u16, https: bool) -> String {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let default_port = if https { 443 } else { 80 };
    let host = if port == default_port {
        host.to_owned()
    } else {
        format!("{host}:{port}")
    };
    let mut head = format!("{} {path} HTTP/1.1\r\nHost: {host}\r\n", request.method());
    for (name, value) in request.headers() {
        if let Ok(value) = value.to_str() {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\nUser-Agent: mailsend/{}\r\n\r\n",
        request.body().len(),
        env!("CARGO_PKG_VERSION")
    ));
    head
}

/// Writes the request, reads until the response is complete (or the
/// server closes), within the deadline.
fn exchange<S: Read + Write>(
    mut stream: S,
    request: &[u8],
    deadline: Instant,
    host: &str,
) -> Result<Vec<u8>, HttpError> {
    let io = |e: std::io::Error| {
        let kind = matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        );
        fail(
            HttpFailure::Network,
            if kind {
                format!("{host} did not answer in time")
            } else {
                format!("{host}: {e}")
            },
        )
    };
    stream.write_all(request).map_err(io)?;
    stream.flush().map_err(io)?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if complete(&raw) {
            return Ok(raw);
        }
        if Instant::now() >= deadline {
            return Err(fail(
                HttpFailure::Network,
                format!("{host} did not answer in time"),
            ));
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(raw),
            Ok(n) => {
                raw.extend_from_slice(&chunk[..n]);
                if raw.len() > MAX_RESPONSE {
                    return Err(fail(
                        HttpFailure::Protocol,
                        format!("{host} sent more than 1 MiB"),
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A TLS peer that closes without close_notify: what came is all.
            Err(_) if !raw.is_empty() && parse_response(&raw).is_some() => return Ok(raw),
            Err(e) => return Err(io(e)),
        }
    }
}

fn split_head(raw: &[u8]) -> Option<(&str, &[u8])> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((std::str::from_utf8(&raw[..end]).ok()?, &raw[end + 4..]))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn is_chunked(head: &str) -> bool {
    header(head, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
}

/// Whether `raw` holds a whole response (by Content-Length or chunks).
fn complete(raw: &[u8]) -> bool {
    let Some((head, body)) = split_head(raw) else {
        return false;
    };
    if is_chunked(head) {
        return dechunk(body).is_some();
    }
    match header(head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(len) => body.len() >= len,
        None => false,
    }
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        // A size near usize::MAX (a hostile endpoint) is never complete.
        if body.len() < size.checked_add(2)? {
            return None;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

fn parse_response(raw: &[u8]) -> Option<HttpResponse> {
    let (head, body) = split_head(raw)?;
    let status_line = head.split("\r\n").next()?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    let body = if is_chunked(head) {
        dechunk(body)?
    } else {
        match header(head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
            Some(len) => body.get(..len)?.to_vec(),
            None => body.to_vec(),
        }
    };
    let mut response = oauth2::http::Response::builder().status(status);
    for line in head.split("\r\n").skip(1) {
        if let Some((n, v)) = line.split_once(':') {
            response = response.header(n.trim(), v.trim());
        }
    }
    response.body(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_by_length_and_by_chunks() {
        let raw =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        assert!(complete(raw));
        let r = parse_response(raw).unwrap();
        assert_eq!(
            (r.status().as_u16(), r.body().as_slice()),
            (200, &b"{}"[..])
        );
        let raw = b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n2\r\n\"}\r\n0\r\n\r\n";
        assert!(complete(raw));
        assert_eq!(parse_response(raw).unwrap().body(), b"{\"a\"}");
        assert!(!complete(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}"));
        assert!(parse_response(b"SMTP 220 hello\r\n\r\n").is_none());
    }

    #[test]
    fn a_chunk_size_near_the_top_of_usize_is_incomplete_not_a_panic() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nab";
        assert!(!complete(raw));
        assert!(parse_response(raw).is_none());
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffe\r\nab\r\n0\r\n\r\n";
        assert!(!complete(raw));
    }
}
