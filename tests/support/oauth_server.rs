//! An OAuth2 authorization server test double on 127.0.0.1: authorize
//! (redirects to the client's loopback with a code), token
//! (authorization_code with PKCE S256 verified, refresh_token with
//! rotation, device_code pending then approved), device authorization and
//! revocation endpoints. Plain http, or https with a test certificate.
//! It records every token and revocation request.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use native_tls::TlsAcceptor;

use super::pki::{Cert, Pki};

pub const CLIENT_ID: &str = "mailsend-test-client";
/// Tokens the double issues start with these: tests assert they never
/// appear in any output.
pub const ACCESS_PREFIX: &str = "AT-s3cret-";
pub const REFRESH_PREFIX: &str = "RT-s3cret-";

#[derive(Clone)]
pub struct Options {
    /// Serve https with this certificate instead of plain http.
    pub tls: Option<Cert>,
    /// `expires_in` of issued access tokens.
    pub access_ttl: u64,
    /// A refresh grant gets a new refresh token; the old one dies.
    pub rotate: bool,
    /// Device polls answered `authorization_pending` before approval.
    pub device_pending: usize,
    /// Stores a challenge that no verifier matches (a PKCE mismatch).
    pub break_pkce: bool,
    /// The client secret the token endpoint demands, if any.
    pub client_secret: Option<String>,
    /// Pause before answering a token request.
    pub token_delay: Duration,
    /// The person refuses: the authorize endpoint redirects with
    /// `error=access_denied`, device polls answer `access_denied`.
    pub deny: bool,
    /// A careless (or hostile) provider: every error response quotes the
    /// request's refresh token, code, code verifier, device code and client
    /// secret in its `error_description`.
    pub echo_secrets: bool,
    /// Every error response's `error` code is this instead (raw JSON
    /// string content, e.g. with `\u001b` or `\n`).
    pub error_code: Option<String>,
    /// The device authorization answer's `interval` and `expires_in`.
    pub device_interval: u64,
    pub device_expires_in: u64,
    /// Device polls answered `slow_down` (before any `authorization_pending`).
    pub device_slow_down: usize,
    /// The device authorization answer's `user_code`, as raw JSON string content.
    pub device_user_code: String,
    /// The token endpoint answers `307` to this Location instead.
    pub token_redirect: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tls: None,
            access_ttl: 3600,
            rotate: true,
            device_pending: 1,
            break_pkce: false,
            client_secret: None,
            token_delay: Duration::ZERO,
            deny: false,
            echo_secrets: false,
            error_code: None,
            device_interval: 1,
            device_expires_in: 60,
            device_slow_down: 0,
            device_user_code: "WDJB-MJHT".into(),
            token_redirect: None,
        }
    }
}

#[derive(Default)]
struct State {
    next: usize,
    /// code -> (code_challenge, redirect_uri)
    codes: HashMap<String, (String, String)>,
    refresh: Vec<String>,
    device_polls: usize,
    token_requests: Vec<HashMap<String, String>>,
    revocations: Vec<HashMap<String, String>>,
    authorize_requests: Vec<HashMap<String, String>>,
}

pub struct OAuthServer {
    port: u16,
    scheme: &'static str,
    state: Arc<Mutex<State>>,
}

impl OAuthServer {
    pub fn start(options: Options) -> OAuthServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State::default()));
        let acceptor = options.tls.map(|cert| {
            Arc::new(TlsAcceptor::new(Pki::shared().identity(cert)).expect("TlsAcceptor"))
        });
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                let options = options.clone();
                let acceptor = acceptor.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(stream) {
                                serve(tls, &state, &options, port);
                            }
                        }
                        None => serve(stream, &state, &options, port),
                    }
                });
            }
        });
        OAuthServer {
            port,
            scheme,
            state,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}{path}", self.scheme, self.port)
    }

    /// The variables that point mailsend's custom provider here.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("MAILSEND_OAUTH_PROVIDER", "custom".into()),
            ("MAILSEND_OAUTH_CLIENT_ID", CLIENT_ID.into()),
            ("MAILSEND_OAUTH_AUTH_URL", self.url("/authorize")),
            ("MAILSEND_OAUTH_TOKEN_URL", self.url("/token")),
            ("MAILSEND_OAUTH_DEVICE_URL", self.url("/device")),
            ("MAILSEND_OAUTH_REVOCATION_URL", self.url("/revoke")),
            ("MAILSEND_OAUTH_SCOPES", "mail.send offline_access".into()),
        ]
    }

    /// Makes `token` a valid refresh token (as if issued earlier).
    pub fn add_refresh_token(&self, token: &str) {
        self.state.lock().unwrap().refresh.push(token.to_owned());
    }

    pub fn token_requests(&self) -> Vec<HashMap<String, String>> {
        self.state.lock().unwrap().token_requests.clone()
    }

    pub fn revocations(&self) -> Vec<HashMap<String, String>> {
        self.state.lock().unwrap().revocations.clone()
    }

    pub fn authorize_requests(&self) -> Vec<HashMap<String, String>> {
        self.state.lock().unwrap().authorize_requests.clone()
    }

    pub fn valid_refresh_tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().refresh.clone()
    }
}

fn form(text: &str) -> HashMap<String, String> {
    oauth2::url::form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect()
}

fn serve<S: Read + Write>(mut stream: S, state: &Mutex<State>, options: &Options, port: u16) {
    let Some((method, target, body)) = read_request(&mut stream) else {
        return;
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let reply = match (method.as_str(), path) {
        ("GET", "/authorize") => authorize(form(query), state, options),
        ("POST", "/token") => {
            std::thread::sleep(options.token_delay);
            let params = form(&body);
            if let Some(to) = &options.token_redirect {
                state.lock().unwrap().token_requests.push(params);
                return write_reply(
                    &mut stream,
                    (307, vec![("Location", to.clone())], String::new()),
                );
            }
            hostile(token(params.clone(), state, options), &params, options)
        }
        ("POST", "/device") => device(form(&body), port, options),
        ("POST", "/revoke") => {
            let params = form(&body);
            let mut s = state.lock().unwrap();
            if let Some(t) = params.get("token") {
                s.refresh.retain(|r| r != t);
            }
            s.revocations.push(params);
            (200, vec![], String::new())
        }
        _ => (404, vec![], String::new()),
    };
    write_reply(&mut stream, reply);
}

fn write_reply<S: Write>(stream: &mut S, reply: Reply) {
    let (status, headers, body) = reply;
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if body.starts_with('{') {
        head.push_str("Content-Type: application/json\r\n");
    }
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
    let _ = stream.flush();
}

type Reply = (u16, Vec<(&'static str, String)>, String);

/// An error reply as `Options::echo_secrets` and `error_code` make it.
fn hostile(reply: Reply, params: &HashMap<String, String>, options: &Options) -> Reply {
    if reply.0 < 400 || (!options.echo_secrets && options.error_code.is_none()) {
        return reply;
    }
    let mut json: serde_json::Value = serde_json::from_str(&reply.2).expect("error JSON");
    if options.echo_secrets {
        let quoted: Vec<String> = [
            "refresh_token",
            "code",
            "code_verifier",
            "device_code",
            "client_secret",
        ]
        .iter()
        .filter_map(|k| params.get(*k).map(|v| format!("{k} {v} is not valid")))
        .collect();
        json["error_description"] = quoted.join("; ").into();
    }
    let mut body = json.to_string();
    if let Some(code) = &options.error_code {
        let current = format!("\"error\":{}", json["error"]);
        body = body.replacen(&current, &format!("\"error\":\"{code}\""), 1);
    }
    (reply.0, reply.1, body)
}

fn error(code: &str) -> Reply {
    (
        400,
        vec![],
        format!(r#"{{"error":"{code}","error_description":"test double says {code}"}}"#),
    )
}

fn authorize(q: HashMap<String, String>, state: &Mutex<State>, options: &Options) -> Reply {
    let mut s = state.lock().unwrap();
    s.authorize_requests.push(q.clone());
    let ok = q.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && q.get("response_type").map(String::as_str) == Some("code")
        && q.get("code_challenge_method").map(String::as_str) == Some("S256");
    let (Some(redirect), Some(challenge), true) =
        (q.get("redirect_uri"), q.get("code_challenge"), ok)
    else {
        return (400, vec![], "bad authorization request".into());
    };
    s.next += 1;
    let code = format!("code-{}", s.next);
    let challenge = if options.break_pkce {
        "not-the-challenge".to_owned()
    } else {
        challenge.clone()
    };
    s.codes.insert(code.clone(), (challenge, redirect.clone()));
    let state_param = q.get("state").cloned().unwrap_or_default();
    let mut query = oauth2::url::form_urlencoded::Serializer::new(String::new());
    if options.deny {
        query.append_pair("error", "access_denied");
    } else {
        query.append_pair("code", &code);
    }
    let location = format!(
        "{redirect}?{}",
        query.append_pair("state", &state_param).finish()
    );
    (302, vec![("Location", location)], String::new())
}

fn issue(s: &mut State, options: &Options) -> Reply {
    s.next += 1;
    let refresh = format!("{REFRESH_PREFIX}{}", s.next);
    s.refresh.push(refresh.clone());
    (
        200,
        vec![],
        format!(
            r#"{{"access_token":"{ACCESS_PREFIX}{}","token_type":"Bearer","expires_in":{},"refresh_token":"{refresh}","scope":"mail.send offline_access"}}"#,
            s.next, options.access_ttl
        ),
    )
}

fn token(p: HashMap<String, String>, state: &Mutex<State>, options: &Options) -> Reply {
    let mut s = state.lock().unwrap();
    s.token_requests.push(p.clone());
    if p.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || p.get("client_secret") != options.client_secret.as_ref()
    {
        return error("invalid_client");
    }
    match p.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some((challenge, redirect)) = p.get("code").and_then(|c| s.codes.remove(c)) else {
                return error("invalid_grant");
            };
            let verifier = p.get("code_verifier").cloned().unwrap_or_default();
            let digest = openssl::sha::sha256(verifier.as_bytes());
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
            if computed != challenge || p.get("redirect_uri") != Some(&redirect) {
                return error("invalid_grant");
            }
            issue(&mut s, options)
        }
        Some("refresh_token") => {
            let Some(old) = p
                .get("refresh_token")
                .filter(|t| s.refresh.contains(t))
                .cloned()
            else {
                return error("invalid_grant");
            };
            if options.rotate {
                s.refresh.retain(|r| *r != old);
                issue(&mut s, options)
            } else {
                s.next += 1;
                (
                    200,
                    vec![],
                    format!(
                        r#"{{"access_token":"{ACCESS_PREFIX}{}","token_type":"Bearer","expires_in":{}}}"#,
                        s.next, options.access_ttl
                    ),
                )
            }
        }
        Some("urn:ietf:params:oauth:grant-type:device_code") => {
            if p.get("device_code").map(String::as_str) != Some("dev-code-1") {
                return error("invalid_grant");
            }
            s.device_polls += 1;
            if options.deny {
                return error("access_denied");
            }
            if s.device_polls <= options.device_slow_down {
                return error("slow_down");
            }
            if s.device_polls <= options.device_slow_down + options.device_pending {
                return error("authorization_pending");
            }
            issue(&mut s, options)
        }
        _ => error("unsupported_grant_type"),
    }
}

fn device(p: HashMap<String, String>, port: u16, options: &Options) -> Reply {
    if p.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return error("invalid_client");
    }
    (
        200,
        vec![],
        format!(
            r#"{{"device_code":"dev-code-1","user_code":"{}","verification_uri":"http://127.0.0.1:{port}/activate","expires_in":{},"interval":{}}}"#,
            options.device_user_code, options.device_expires_in, options.device_interval
        ),
    )
}

fn read_request<S: Read>(stream: &mut S) -> Option<(String, String, String)> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while raw.len() < head_end + 4 + length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&raw[head_end + 4..]).into_owned();
    let mut first = head.lines().next()?.split(' ');
    Some((first.next()?.to_owned(), first.next()?.to_owned(), body))
}

/// A plain-http GET to 127.0.0.1 (the double's authorize endpoint, or
/// mailsend's loopback redirect): status, Location header, body.
pub fn http_get(url: &str) -> (u16, Option<String>, String) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let mut stream = TcpStream::connect(authority).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut raw = String::new();
    let _ = stream.read_to_string(&mut raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let location = head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case("location")
            .then(|| v.trim().to_owned())
    });
    (status, location, body.to_owned())
}
