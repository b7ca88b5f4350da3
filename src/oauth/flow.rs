//! `mailsend auth login`: the authorization-code flow with PKCE (S256) and
//! a loopback redirect on 127.0.0.1 (RFC 8252), or the device-code flow
//! (RFC 8628). Either ends with the tokens saved in the token file.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use oauth2::{
    AuthorizationCode, CsrfToken, PkceCodeChallenge, Scope, StandardDeviceAuthorizationResponse,
    TokenResponse,
};

use super::provider::{Endpoints, Provider};
use super::{Client, OAuthError, OAuthKind, OAuthSettings, store};
use crate::term::errln;

/// How long `auth login` waits for the person to finish in the browser.
pub const LOGIN_WAIT: Duration = Duration::from_secs(300);

pub fn login(
    cfg: &OAuthSettings,
    timeout: Duration,
    device: bool,
    no_browser: bool,
) -> Result<(), OAuthError> {
    // Where the tokens go is checked before anyone signs in.
    let path = cfg.token_path()?;
    store::check_replaceable(path)?;
    let endpoints = Endpoints::resolve(cfg)?;
    let answer = if device {
        device_flow(cfg, &endpoints, timeout)?
    } else {
        browser_flow(cfg, &endpoints, timeout, no_browser)?
    };
    let refresh = answer.refresh_token().map(|t| t.secret().clone());
    if refresh.is_none() {
        return Err(OAuthError::new(
            OAuthKind::Protocol,
            format!(
                "{} gave no refresh token: mailsend could not renew the access token without you",
                endpoints.provider
            ),
        )
        .hint("for Microsoft, offline_access must be among oauth_scopes"));
    }
    let tokens = store::Tokens {
        provider: endpoints.provider.to_string(),
        scopes: answer
            .scopes()
            .map(|s| s.iter().map(|s| s.to_string()).collect())
            .unwrap_or_else(|| endpoints.scopes.clone()),
        refresh_token: refresh,
        access_token: Some(answer.access_token().secret().clone()),
        expires_at: Some(super::expires_at(answer.expires_in())),
    };
    store::save(path, &tokens)?;
    errln!(
        "mailsend: signed in to {} for account {}; tokens saved in {}",
        endpoints.provider,
        cfg.account,
        path.display()
    );
    Ok(())
}

type Answer = oauth2::basic::BasicTokenResponse;

fn browser_flow(
    cfg: &OAuthSettings,
    endpoints: &Endpoints,
    timeout: Duration,
    no_browser: bool,
) -> Result<Answer, OAuthError> {
    if endpoints.auth.is_none() {
        return Err(
            OAuthError::config("the custom OAuth2 provider has no authorization endpoint")
                .hint("set oauth_auth_url (MAILSEND_OAUTH_AUTH_URL), or use --device"),
        );
    }
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| OAuthError::io(format!("cannot listen on 127.0.0.1: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| OAuthError::io(format!("cannot listen on 127.0.0.1: {e}")))?
        .port();
    let redirect = format!("http://127.0.0.1:{port}/");
    let client = Client::new(cfg, endpoints, Some(redirect.clone()), timeout)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .inner
        .authorize_url(CsrfToken::new_random)
        .map_err(|e| OAuthError::config(e.to_string()))?
        .add_scopes(endpoints.scopes.iter().cloned().map(Scope::new))
        .set_pkce_challenge(challenge);
    if endpoints.provider == Provider::Google {
        // Without these Google gives a refresh token only the first time.
        request = request
            .add_extra_param("access_type", "offline")
            .add_extra_param("prompt", "consent");
    }
    let (url, state) = request.url();
    errln!(
        "mailsend: to sign in to {} for account {}, open this address in a browser:",
        endpoints.provider,
        cfg.account
    );
    errln!("{url}");
    if !no_browser {
        open_browser(url.as_str());
    }
    errln!(
        "mailsend: waiting up to {} for the browser to come back to {redirect} (Ctrl-C to give up)",
        humantime::format_duration(LOGIN_WAIT)
    );
    let code = wait_for_redirect(
        &listener,
        state.secret(),
        Instant::now() + LOGIN_WAIT,
        |code| {
            client.hide(code);
            client.hide(verifier.secret());
            client
                .inner
                .exchange_code(AuthorizationCode::new(code.to_owned()))
                .set_pkce_verifier(oauth2::PkceCodeVerifier::new(verifier.secret().clone()))
                .request(&|r| client.call(r))
                .map_err(|e| client.classify(e, "exchanging the sign-in code", cfg))
        },
    )?;
    Ok(code)
}

/// Opens the system's browser when there is a desktop to show it on.
fn open_browser(url: &str) {
    let desktop = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
    if !desktop {
        return;
    }
    let started = std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match started {
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(_) => errln!("mailsend: could not start xdg-open; open the address by hand"),
    }
}

/// How long one connection to the loopback listener may take to send its
/// request (a browser sends it at once; a preconnect or a slowloris never
/// does).
const REQUEST_WAIT: Duration = Duration::from_secs(10);

/// How many connections are read at once; more are closed unread.
const MAX_READERS: usize = 16;

/// Accepts connections on the loopback listener until the redirect with
/// a code (or an error) comes, or `deadline`. The code is exchanged (by
/// `exchange`) only when `state` matches; the browser gets a short page.
/// Each connection's request is read in a thread of its own, within
/// [`REQUEST_WAIT`], so that an idle or dripping one delays nothing.
fn wait_for_redirect(
    listener: &TcpListener,
    state: &str,
    deadline: Instant,
    exchange: impl Fn(&str) -> Result<Answer, OAuthError>,
) -> Result<Answer, OAuthError> {
    listener
        .set_nonblocking(true)
        .map_err(|e| OAuthError::io(format!("loopback listener: {e}")))?;
    let (requests, arrived) = std::sync::mpsc::channel::<(TcpStream, String)>();
    let readers = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    loop {
        if Instant::now() >= deadline {
            return Err(OAuthError::network(format!(
                "no sign-in came back within {}",
                humantime::format_duration(LOGIN_WAIT)
            ))
            .hint(
                "run `mailsend auth login` again and finish the sign-in in the browser in time",
            ));
        }
        match listener.accept() {
            Ok((stream, _)) => {
                use std::sync::atomic::Ordering;
                if readers.fetch_add(1, Ordering::SeqCst) >= MAX_READERS {
                    readers.fetch_sub(1, Ordering::SeqCst);
                    continue; // dropped: closed unread
                }
                let (requests, readers) = (requests.clone(), readers.clone());
                std::thread::spawn(move || {
                    if let Some(request) = read_request(stream, Instant::now() + REQUEST_WAIT) {
                        let _ = requests.send(request);
                    }
                    readers.fetch_sub(1, Ordering::SeqCst);
                });
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(OAuthError::io(format!("loopback listener: {e}"))),
        }
        let Ok((mut stream, target)) = arrived.recv_timeout(Duration::from_millis(50)) else {
            continue;
        };
        let Some(query) = target
            .strip_prefix("/?")
            .or_else(|| (target == "/").then_some(""))
        else {
            respond(&mut stream, "404 Not Found", "Not found.");
            continue;
        };
        let params: Vec<(String, String)> = oauth2::url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if get("state") != Some(state) {
            if get("code").is_none() && get("error").is_none() && get("state").is_none() {
                respond(&mut stream, "404 Not Found", "Not found.");
                continue;
            }
            respond(
                &mut stream,
                "400 Bad Request",
                "This answer does not belong to the sign-in mailsend started: nothing was done. Run mailsend auth login again.",
            );
            return Err(OAuthError::new(
                OAuthKind::Refused,
                "the sign-in redirect carried the wrong state: its code was not exchanged (a stale browser tab, or a forged redirect)",
            )
            .hint("run `mailsend auth login` again"));
        }
        if let Some(error) = get("error") {
            respond(
                &mut stream,
                "200 OK",
                "The sign-in was refused. You can close this window.",
            );
            let error: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            return Err(OAuthError::new(
                OAuthKind::Refused,
                format!("the provider refused the sign-in: {error}"),
            ));
        }
        let Some(code) = get("code") else {
            respond(
                &mut stream,
                "400 Bad Request",
                "No sign-in code in this answer.",
            );
            return Err(OAuthError::new(
                OAuthKind::Protocol,
                "the sign-in redirect carried no code",
            ));
        };
        return match exchange(code) {
            Ok(answer) => {
                respond(
                    &mut stream,
                    "200 OK",
                    "Signed in. You can close this window and return to the terminal.",
                );
                Ok(answer)
            }
            Err(e) => {
                respond(
                    &mut stream,
                    "200 OK",
                    "The sign-in failed; the terminal says why. You can close this window.",
                );
                Err(e)
            }
        };
    }
}

/// The request target of one HTTP request on the loopback listener, if
/// its head (at most 16 KiB) comes before `deadline`.
fn read_request(mut stream: TcpStream, deadline: Instant) -> Option<(TcpStream, String)> {
    stream.set_nonblocking(false).ok()?;
    let _ = stream.set_write_timeout(Some(REQUEST_WAIT));
    let mut head = Vec::new();
    let mut chunk = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = deadline.checked_duration_since(Instant::now())?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 || head.len() > 16 * 1024 {
            return None;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&head).lines().next()?.to_owned();
    let mut parts = line.split(' ');
    (parts.next()? == "GET").then_some(())?;
    let target = parts.next()?.to_owned();
    Some((stream, target))
}

fn respond(stream: &mut TcpStream, status: &str, text: &str) {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>mailsend</title></head><body><p>{text}</p></body></html>\n"
    );
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

fn device_flow(
    cfg: &OAuthSettings,
    endpoints: &Endpoints,
    timeout: Duration,
) -> Result<Answer, OAuthError> {
    if endpoints.provider == Provider::Google {
        return Err(OAuthError::config(
            "Google refuses the device-code flow for mail scopes: sign in without --device",
        )
        .hint("run `mailsend auth login` (add --no-browser on a machine without a desktop and open the address elsewhere; the browser must reach this machine's 127.0.0.1, e.g. through ssh -L)"));
    }
    if endpoints.device.is_none() {
        return Err(
            OAuthError::config("the OAuth2 provider has no device authorization endpoint").hint(
                "set oauth_device_url (MAILSEND_OAUTH_DEVICE_URL), or sign in without --device",
            ),
        );
    }
    let client = Client::new(cfg, endpoints, None, timeout)?;
    let details: StandardDeviceAuthorizationResponse = client
        .inner
        .exchange_device_code()
        .map_err(|e| OAuthError::config(e.to_string()))?
        .add_scopes(endpoints.scopes.iter().cloned().map(Scope::new))
        .request(&|r| client.call(r))
        .map_err(|e| client.classify(e, "starting the device sign-in", cfg))?;
    client.hide(details.device_code().secret());
    let (details, wait) = polling(details)?;
    errln!(
        "mailsend: to sign in to {} for account {}, open {} and enter the code {}",
        endpoints.provider,
        cfg.account,
        crate::term::printable(details.verification_uri().as_str()),
        crate::term::printable(details.user_code().secret())
    );
    errln!(
        "mailsend: waiting up to {} (asking every {})",
        humantime::format_duration(wait),
        humantime::format_duration(details.interval())
    );
    // The oauth2 crate polls again after any failed request, until the
    // code expires; only a network failure may pass, as RFC 8628 says: an
    // untrusted certificate, a bad URL or a non-HTTP answer ends the wait
    // at once (the poll is answered `access_denied`, the real error kept).
    let fatal = std::cell::RefCell::new(None);
    let poll = |request| match client.call(request) {
        Err(e) if e.kind != super::http::HttpFailure::Network => {
            fatal.replace(Some(e));
            oauth2::http::Response::builder()
                .status(400)
                .header("content-type", "application/json")
                .body(br#"{"error":"access_denied"}"#.to_vec())
                .map_err(|_| super::http::HttpError {
                    kind: super::http::HttpFailure::Protocol,
                    message: "cannot stop polling".into(),
                })
        }
        other => other,
    };
    let answer = client.inner.exchange_device_access_token(&details).request(
        &poll,
        // slow_down adds 5 s each time: never more than a minute.
        |d| std::thread::sleep(d.clamp(MIN_POLL, MAX_POLL)),
        Some(wait),
    );
    match (answer, fatal.take()) {
        (Ok(answer), _) => Ok(answer),
        (Err(_), Some(e)) => Err(client.classify(
            oauth2::RequestTokenError::<_, oauth2::DeviceCodeErrorResponse>::Request(e),
            "device sign-in",
            cfg,
        )),
        (Err(e), None) => Err(client.classify(e, "device sign-in", cfg)),
    }
}

/// The least and the most time between two polls of the device flow,
/// whatever the provider says (`interval` 0 would hammer it).
const MIN_POLL: Duration = Duration::from_secs(1);
const MAX_POLL: Duration = Duration::from_secs(60);
/// The longest a device sign-in is waited for (Microsoft gives 15 min).
const MAX_DEVICE_WAIT: Duration = Duration::from_secs(30 * 60);

/// The device authorization answer with its interval at least
/// [`MIN_POLL`], and how long to poll: its `expires_in`, at most
/// [`MAX_DEVICE_WAIT`]. An interval no poll fits in is refused (76):
/// the code would expire before the first answer.
fn polling(
    details: StandardDeviceAuthorizationResponse,
) -> Result<(StandardDeviceAuthorizationResponse, Duration), OAuthError> {
    let wait = details.expires_in().min(MAX_DEVICE_WAIT);
    let interval = details.interval();
    if interval > MAX_POLL || interval >= wait {
        return Err(OAuthError::new(
            OAuthKind::Protocol,
            format!(
                "the provider asks to poll every {} s (interval), while its code lives {} s: no sign-in could complete",
                interval.as_secs(),
                details.expires_in().as_secs()
            ),
        ));
    }
    if interval >= MIN_POLL {
        return Ok((details, wait));
    }
    let mut json = serde_json::to_value(&details)
        .map_err(|e| OAuthError::new(OAuthKind::Protocol, e.to_string()))?;
    json["interval"] = MIN_POLL.as_secs().into();
    let details = serde_json::from_value(json)
        .map_err(|e| OAuthError::new(OAuthKind::Protocol, e.to_string()))?;
    Ok((details, wait))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauth2::basic::BasicTokenType;
    use oauth2::{AccessToken, EmptyExtraTokenFields};

    fn answer() -> Answer {
        Answer::new(
            AccessToken::new("at".into()),
            BasicTokenType::Bearer,
            EmptyExtraTokenFields {},
        )
    }

    /// A browser's preconnect that never sends, and a slowloris dripping a
    /// byte a second, do not keep the real redirect waiting.
    #[test]
    fn idle_and_dripping_connections_do_not_block_the_redirect() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut drip = TcpStream::connect(("127.0.0.1", port)).unwrap();
        std::thread::spawn(move || {
            let _keep = idle;
            let _ = drip.write_all(b"GET /?state=");
            for _ in 0..120 {
                if drip.write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let mut real = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let _ = real.write_all(b"GET /?code=c1&state=s1 HTTP/1.1\r\nHost: x\r\n\r\n");
            let mut page = String::new();
            let _ = real.read_to_string(&mut page);
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let got = wait_for_redirect(
                &listener,
                "s1",
                Instant::now() + Duration::from_secs(60),
                |code| {
                    assert_eq!(code, "c1");
                    Ok(answer())
                },
            );
            let _ = tx.send(got.is_ok());
        });
        let done = rx.recv_timeout(Duration::from_secs(8));
        assert_eq!(done, Ok(true), "the redirect was not taken in time");
    }

    /// The wait ends at its deadline even while a connection drips.
    #[test]
    fn the_deadline_holds_while_a_connection_drips() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut drip = TcpStream::connect(("127.0.0.1", port)).unwrap();
        std::thread::spawn(move || {
            for _ in 0..120 {
                if drip.write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let got = wait_for_redirect(
                &listener,
                "s1",
                Instant::now() + Duration::from_secs(2),
                |_| Ok(answer()),
            );
            let _ = tx.send(got.map(|_| ()).map_err(|e| e.kind));
        });
        let done = rx.recv_timeout(Duration::from_secs(8));
        assert_eq!(
            done,
            Ok(Err(OAuthKind::Network)),
            "the deadline did not hold"
        );
    }
}
