//! A scripted SMTP peer for protocol faults the well-behaved
//! [`super::server::TestServer`] cannot make: the test writes the server's
//! side byte for byte (over-long lines, a 421 and a hang-up, escape
//! sequences, a TLS handshake that demands a client certificate) and gets
//! back every byte the client sent.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use openssl::ssl::{SslAcceptor, SslMethod, SslStream, SslVerifyMode};
use openssl::x509::X509;

use super::pki::{Cert, Pki};

/// A test server's end of a connection, in clear or under TLS (the
/// scripted server and `ccert.rs`'s share it).
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<SslStream<TcpStream>>),
    Gone,
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Gone => Ok(0),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Gone => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
            Stream::Gone => Ok(()),
        }
    }
}

/// The server's end of one connection.
pub struct Peer {
    reader: BufReader<Stream>,
    received: Arc<Mutex<Vec<u8>>>,
}

impl Peer {
    /// Sends `text` as is (the script writes its own CRLFs).
    pub fn send(&mut self, text: impl AsRef<[u8]>) {
        let _ = self.reader.get_mut().write_all(text.as_ref());
        let _ = self.reader.get_mut().flush();
    }

    /// The next line from the client, without CRLF; None at EOF.
    pub fn line(&mut self) -> Option<String> {
        let mut raw = Vec::new();
        match self.reader.read_until(b'\n', &mut raw) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                self.received.lock().expect("lock").extend_from_slice(&raw);
                Some(String::from_utf8_lossy(&raw).trim_end().to_owned())
            }
        }
    }

    /// Reads `n` lines (a pipelined group), None if the client stopped.
    pub fn lines(&mut self, n: usize) -> Option<Vec<String>> {
        (0..n).map(|_| self.line()).collect()
    }

    /// Reads message content up to and including the lone dot.
    pub fn data(&mut self) -> Option<()> {
        while self.line()? != "." {}
        Some(())
    }

    /// Greeting and an EHLO answer with `extensions`.
    pub fn hello(&mut self, extensions: &[&str]) -> Option<()> {
        self.send("220 scripted ESMTP\r\n");
        self.line()?;
        let mut reply = String::from("250-scripted\r\n");
        for (i, e) in extensions.iter().enumerate() {
            let sep = if i + 1 == extensions.len() { ' ' } else { '-' };
            reply.push_str(&format!("250{sep}{e}\r\n"));
        }
        if extensions.is_empty() {
            reply = "250 scripted\r\n".into();
        }
        self.send(reply);
        Some(())
    }

    /// Answers STARTTLS and performs the handshake with the trusted test
    /// certificate, demanding a client certificate signed by the test CA.
    pub fn start_tls_demanding_client_cert(&mut self) -> Result<(), String> {
        self.send("220 2.0.0 Ready to start TLS\r\n");
        let pki = Pki::shared();
        let pair = pki.pair(Cert::Good);
        let mut acceptor =
            SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).map_err(|e| e.to_string())?;
        let cert = X509::from_pem(&pair.cert_pem).map_err(|e| e.to_string())?;
        let key =
            openssl::pkey::PKey::private_key_from_pem(&pair.key_pem).map_err(|e| e.to_string())?;
        acceptor.set_certificate(&cert).map_err(|e| e.to_string())?;
        acceptor.set_private_key(&key).map_err(|e| e.to_string())?;
        acceptor.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
        let acceptor = acceptor.build();
        let Stream::Plain(tcp) = std::mem::replace(self.reader.get_mut(), Stream::Gone) else {
            return Err("already TLS".into());
        };
        let tls = acceptor.accept(tcp).map_err(|e| e.to_string())?;
        *self.reader.get_mut() = Stream::Tls(Box::new(tls));
        Ok(())
    }
}

/// A one-connection scripted server on 127.0.0.1.
pub struct Scripted {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
    thread: Option<JoinHandle<()>>,
}

impl Scripted {
    /// Serves one connection with `script`, then closes it.
    pub fn start(script: impl FnOnce(&mut Peer) + Send + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind scripted server");
        let addr = listener.local_addr().expect("local_addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let rec = received.clone();
        let thread = std::thread::spawn(move || {
            let Ok((tcp, _)) = listener.accept() else {
                return;
            };
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
            let mut peer = Peer {
                reader: BufReader::new(Stream::Plain(tcp)),
                received: rec,
            };
            script(&mut peer);
        });
        Scripted {
            addr,
            received,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Everything the client sent, once the script has ended.
    pub fn received(mut self) -> String {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        String::from_utf8_lossy(&self.received.lock().expect("lock")).into_owned()
    }
}
