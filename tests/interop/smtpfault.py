"""A small scripted SMTP server for the interop suite (Python stdlib only).

It does on cue what a real Postfix will not: stay silent, greet with 421,
offer no STARTTLS, present a bad certificate, drop the connection during
DATA, refuse a message after DATA. It also records every session: the
command lines exactly as received and the raw DATA bytes (dot-stuffing,
line endings and the terminating ".\r\n" included), which is what the
wire-level checks read.

Listens on 127.0.0.1 only, on a port the kernel picks.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass
class Scenario:
    """How the scripted server behaves."""

    # What to say on connect; None = accept the TCP connection and say nothing.
    greeting: Optional[str] = "220 fault.interop.invalid ESMTP scripted"
    # Close the connection right after the greeting (e.g. after a 421).
    close_after_greeting: bool = False
    # Offer STARTTLS (needs cert) / speak TLS from the first byte (needs cert).
    starttls: bool = False
    implicit_tls: bool = False
    cert: Optional[str] = None  # chain PEM
    key: Optional[str] = None
    # AUTH mechanisms offered ("" = no AUTH line); any credentials are accepted.
    auth: str = "PLAIN LOGIN"
    pipelining: bool = False
    size: Optional[int] = None
    # Reply to RCPT TO for an address; default 250.
    rcpt_reply: Callable[[str], str] = lambda addr: "250 2.1.5 Ok"
    # Reply after the end of data.
    data_reply: str = "250 2.0.0 Ok: queued as SCRIPTED"
    # Close the connection after this many bytes of DATA (None = read it all).
    drop_in_data_after: Optional[int] = None


@dataclass
class Session:
    commands: list[str] = field(default_factory=list)
    data: list[bytes] = field(default_factory=list)  # raw DATA per transaction
    tls: bool = False
    handshake_error: Optional[str] = None
    closed_by_client: bool = False


class _Conn:
    """Line reader over a socket that can be upgraded to TLS."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def readline(self) -> bytes:
        start = 0
        while True:
            i = self.buf.find(b"\n", start)
            if i >= 0:
                line = bytes(self.buf[: i + 1])
                del self.buf[: i + 1]
                return line
            start = len(self.buf)
            if len(self.buf) > 1 << 20:
                raise EOFError("line too long")
            self._fill()

    def read_data(self, drop_after: Optional[int]) -> bytes:
        """Reads DATA up to and including the terminating line."""
        start = 0
        while True:
            if self.buf.startswith(b".\r\n"):
                end = 3
            else:
                i = self.buf.find(b"\r\n.\r\n", max(0, start - 4))
                end = i + 5 if i >= 0 else -1
            if end >= 0:
                data = bytes(self.buf[:end])
                del self.buf[:end]
                return data
            if drop_after is not None and len(self.buf) >= drop_after:
                raise _Drop(bytes(self.buf))
            start = len(self.buf)
            self._fill()

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\r\n")


class _Drop(Exception):
    def __init__(self, partial: bytes):
        self.partial = partial


class ScriptedServer:
    """One scripted SMTP server on 127.0.0.1; use as a context manager."""

    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        self.sessions: list[Session] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self._tls_ctx = None
        if scenario.cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(scenario.cert, scenario.key)
            self._tls_ctx = ctx

    def __enter__(self) -> "ScriptedServer":
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        for s in list(self._socks):
            try:
                s.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=5)
        self.listener.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                session = Session()
                self.sessions.append(session)
                self._socks.append(sock)
            t = threading.Thread(target=self._serve, args=(sock, session), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, sock: socket.socket, session: Session) -> None:
        sc = self.scenario
        sock.settimeout(30)
        try:
            if sc.implicit_tls:
                tls = self._handshake(sock, session)
                if tls is None:
                    return
                sock = tls
            conn = _Conn(sock)
            if sc.greeting is None:
                # Say nothing; wait for the client to give up (or the suite to end).
                while not self._stop.is_set():
                    try:
                        if not sock.recv(4096):
                            session.closed_by_client = True
                            return
                    except socket.timeout:
                        continue
                return
            conn.send(sc.greeting)
            if sc.close_after_greeting:
                return
            self._dialogue(conn, session)
        except (EOFError, ConnectionError, socket.timeout, ssl.SSLError, OSError):
            session.closed_by_client = True
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def _handshake(self, sock, session):
        try:
            tls = self._tls_ctx.wrap_socket(sock, server_side=True)
            session.tls = True
            return tls
        except (ssl.SSLError, OSError) as e:
            session.handshake_error = str(e)
            sock.close()
            return None

    def _ehlo_lines(self, session: Session) -> list[str]:
        sc = self.scenario
        caps = ["fault.interop.invalid"]
        if sc.pipelining:
            caps.append("PIPELINING")
        if sc.size is not None:
            caps.append(f"SIZE {sc.size}")
        if sc.starttls and not session.tls:
            caps.append("STARTTLS")
        if sc.auth:
            caps.append(f"AUTH {sc.auth}")
        caps.append("8BITMIME")
        return caps

    def _dialogue(self, conn: _Conn, session: Session) -> None:
        sc = self.scenario
        in_mail = False
        while True:
            raw = conn.readline()
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            session.commands.append(line)
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                caps = self._ehlo_lines(session)
                for c in caps[:-1]:
                    conn.send(f"250-{c}")
                conn.send(f"250 {caps[-1]}")
            elif verb == "STARTTLS" and sc.starttls and not session.tls:
                conn.send("220 2.0.0 Ready to start TLS")
                tls = self._handshake(conn.sock, session)
                if tls is None:
                    return
                conn = _Conn(tls)
            elif verb == "AUTH" and sc.auth:
                parts = line.split()
                if len(parts) >= 2 and parts[1].upper() == "LOGIN":
                    conn.send("334 VXNlcm5hbWU6")
                    session.commands.append(conn.readline().decode().rstrip("\r\n"))
                    conn.send("334 UGFzc3dvcmQ6")
                    session.commands.append(conn.readline().decode().rstrip("\r\n"))
                elif len(parts) == 2:
                    conn.send("334 ")
                    session.commands.append(conn.readline().decode().rstrip("\r\n"))
                conn.send("235 2.7.0 Authentication successful")
            elif verb == "MAIL":
                in_mail = True
                conn.send("250 2.1.0 Ok")
            elif verb == "RCPT":
                addr = line.split(":", 1)[1].strip() if ":" in line else ""
                addr = addr.split(">", 1)[0].lstrip("<")
                conn.send(sc.rcpt_reply(addr))
            elif verb == "DATA":
                if not in_mail:
                    conn.send("503 5.5.1 Error: need MAIL command")
                    continue
                conn.send("354 End data with <CR><LF>.<CR><LF>")
                try:
                    data = conn.read_data(sc.drop_in_data_after)
                except _Drop as d:
                    session.data.append(d.partial)
                    # Abort hard: RST instead of FIN, as a crashed server would.
                    conn.sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    return
                session.data.append(data)
                conn.send(sc.data_reply)
                in_mail = False
            elif verb == "RSET":
                in_mail = False
                conn.send("250 2.0.0 Ok")
            elif verb == "NOOP":
                conn.send("250 2.0.0 Ok")
            elif verb == "QUIT":
                conn.send("221 2.0.0 Bye")
                return
            else:
                conn.send("502 5.5.2 Error: command not recognized")


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
