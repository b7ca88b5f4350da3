#!/usr/bin/env python3
"""A TCP proxy that makes a slow link out of loopback (no netem needed).

Listens on --listen, connects every accepted client to --upstream, and
forwards each chunk it reads, in either direction, --delay-ms after it
arrived: a chunk read at time t leaves at t + D, whatever came before it.
Chunks never wait for one another beyond their own t + D (no serialisation,
no bandwidth limit, unbounded buffering): the link has latency only, so a
round trip through the proxy costs 2 * D on top of loopback's.

Order is kept: each direction has one reader thread (stamps chunks as they
arrive) and one writer thread (sends them in order, each at its own time;
times only grow, so FIFO order is send order). A half-close (EOF) is passed
on after the same delay, so QUIT/close sequences behave as on a real link.
Both sockets have TCP_NODELAY, so the proxy adds no Nagle/delayed-ACK stall.

Connecting: the client's connect() returns at once (the proxy accepts on
loopback), but the proxy connects upstream only --connect-delay-ms later
(default 3 x --delay-ms: SYN, SYN-ACK, ACK), so the server's greeting
reaches the client two round trips after it connected, as over a real link.
Whatever the client sends meanwhile keeps its own t + D, or leaves as soon
as the upstream connection is up.

Usage:
  scripts/delay-proxy.py --listen 127.0.0.1:0 --upstream 127.0.0.1:2525 [--delay-ms 25]
      prints "PORT=<port>" on stdout once listening, then runs until killed
  scripts/delay-proxy.py --self-test [--delay-ms 25]
      starts an echo server and a proxy in front of it, and prints the
      round trips measured through it (one ping at a time, then a burst that
      checks chunks are not delayed by earlier ones); exits 1 if off
  --log FILE  one line per chunk: "<seconds since start> <conn> cs|sc <bytes>"
      at the time it is forwarded (the wire, as seen from the client's side)
  scripts/delay-proxy.py --analyse FILE [--delay-ms 25]
      reads such a log and prints, per connection, the round trips the
      client waited for (a write after a read: a "turn") and where the
      time went: client think time (reply forwarded to it -> its next
      write), server think time, and the rest (the link)

Python 3 standard library only. Binds only where --listen says (127.0.0.1
by default when only a port is given).
"""

import argparse
import collections
import socket
import statistics
import sys
import threading
import time

CHUNK = 65536
EOF = None  # queue marker: the reader saw the end of the stream


def parse_addr(text, default_host="127.0.0.1"):
    host, sep, port = text.rpartition(":")
    if not sep:
        host = ""
    try:
        port = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not [HOST:]PORT: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {text!r}")
    return (host or default_host, port)


class Log:
    """Timestamps of forwarded chunks, for looking at the round trips."""

    def __init__(self, path):
        self.start = time.monotonic()
        self.file = open(path, "a", buffering=1) if path else None
        self.lock = threading.Lock()

    def chunk(self, conn, direction, size):
        if self.file:
            with self.lock:
                self.file.write(f"{time.monotonic() - self.start:.6f} {conn} {direction} {size}\n")


class Pipe:
    """One direction of one connection: src -> (delay) -> dst."""

    def __init__(self, src, dst, delay, log, conn, direction, done):
        """`dst` may be a socket or a one-item list filled (with the
        socket) later, as `connected` is set."""
        self.src, self.dst, self.delay = src, dst, delay
        self.connected = threading.Event()
        if isinstance(dst, socket.socket):
            self.connected.set()
        self.log, self.conn, self.direction = log, conn, direction
        self.queue = collections.deque()
        self.cond = threading.Condition()
        self.done = done
        threading.Thread(target=self.read, daemon=True).start()
        threading.Thread(target=self.write, daemon=True).start()

    def put(self, due, data):
        with self.cond:
            self.queue.append((due, data))
            self.cond.notify()

    def read(self):
        try:
            while True:
                data = self.src.recv(CHUNK)
                due = time.monotonic() + self.delay
                if not data:
                    break
                self.put(due, data)
        except OSError:
            pass
        self.put(time.monotonic() + self.delay, EOF)

    def write(self):
        self.connected.wait()
        if isinstance(self.dst, list):
            self.dst = self.dst[0]
        if self.dst is None:  # the upstream could not be reached
            self.src.close()
            return
        try:
            while True:
                with self.cond:
                    while not self.queue:
                        self.cond.wait()
                    due, data = self.queue.popleft()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if data is EOF:
                    self.dst.shutdown(socket.SHUT_WR)
                    break
                self.dst.sendall(data)
                self.log.chunk(self.conn, self.direction, len(data))
        except OSError:
            # The far side is gone: make the near side notice too.
            for s in (self.src, self.dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.done()


def serve_connection(client, upstream, delay, connect_delay, log, conn):
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    left = [2]
    lock = threading.Lock()
    server = [None]

    def done():
        with lock:
            left[0] -= 1
            if left[0]:
                return
        client.close()
        if server[0]:
            server[0].close()

    # Client to server: read (and stamp) at once, write once connected.
    to_server = Pipe(client, server, delay, log, conn, "cs", done)

    def connect():
        time.sleep(connect_delay)
        try:
            s = socket.create_connection(upstream)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as e:
            print(f"delay-proxy: cannot reach {upstream[0]}:{upstream[1]}: {e}", file=sys.stderr)
            to_server.connected.set()  # server[0] is None: the pipe closes the client
            return
        server[0] = s
        to_server.connected.set()
        Pipe(s, client, delay, log, conn, "sc", done)

    threading.Thread(target=connect, daemon=True).start()


def start_proxy(listen, upstream, delay, connect_delay, log):
    """Listens and serves in the background; returns the bound port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(listen)
    listener.listen(128)

    def accept():
        conn = 0
        while True:
            client, _ = listener.accept()
            conn += 1
            serve_connection(client, upstream, delay, connect_delay, log, conn)

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1]


def start_echo():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def echo(s):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with s:
            while data := s.recv(CHUNK):
                s.sendall(data)

    def accept():
        while True:
            s, _ = listener.accept()
            threading.Thread(target=echo, args=(s,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1]


def recv_exactly(s, n):
    got = b""
    while len(got) < n:
        data = s.recv(n - len(got))
        if not data:
            raise OSError("echo connection closed")
        got += data
    return got


def self_test(delay, connect_delay, log):
    """Echo through the proxy: connect and first echo, RTT of single
    pings, then a burst."""
    echo_port = start_echo()
    port = start_proxy(("127.0.0.1", 0), ("127.0.0.1", echo_port), delay, connect_delay, log)
    expected = 2 * delay * 1000
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(b"hello 0\n")
    recv_exactly(s, 8)
    first = (time.monotonic() - t0) * 1000
    first_expected = max(connect_delay * 1000 + delay * 1000, expected)
    rtts = []
    for i in range(20):
        t0 = time.monotonic()
        s.sendall(b"ping %02d\n" % i)
        recv_exactly(s, 8)
        rtts.append((time.monotonic() - t0) * 1000)
    # A burst: 10 chunks 5 ms apart, each must come back 2D after it left,
    # not 2D after the previous one came back (no serialisation).
    sent, lags = [], []
    reader_done = threading.Event()

    def read_burst():
        for _ in range(10):
            recv_exactly(s, 9)
            lags.append((time.monotonic() - sent[len(lags)]) * 1000)
        reader_done.set()

    threading.Thread(target=read_burst, daemon=True).start()
    for i in range(10):
        sent.append(time.monotonic())
        s.sendall(b"burst %02d\n" % i)
        time.sleep(0.005)
    ok_burst = reader_done.wait(10 + 4 * delay)
    s.close()
    print(f"delay-proxy self-test: delay {delay * 1000:g} ms each way, expected RTT {expected:.1f} ms")
    print(
        f"  connect + first echo: {first:.2f} ms (expected {first_expected:.1f}: upstream connected "
        f"{connect_delay * 1000:g} ms after the client)"
    )
    print(
        f"  20 pings, one at a time: RTT min {min(rtts):.2f} median {statistics.median(rtts):.2f} "
        f"max {max(rtts):.2f} ms"
    )
    if ok_burst:
        print(
            f"  burst of 10 chunks 5 ms apart (total span 50 ms): each back after "
            f"min {min(lags):.2f} max {max(lags):.2f} ms"
        )
    else:
        print("  burst: not all chunks came back")
    median = statistics.median(rtts)
    # Loopback and thread wake-ups add well under a few ms; anything more
    # (or a burst chunk held behind earlier ones) means the proxy is off.
    good = (
        ok_burst
        and first_expected <= first < first_expected + 10
        and expected <= median < expected + 5
        and min(rtts) >= expected
        and max(lags) < expected + 5
    )
    print("  result:", "ok" if good else "OFF (see the figures above)")
    return 0 if good else 1


def analyse(path, delay):
    """Round trips and think times per connection, from a --log file."""
    conns = {}
    with open(path) as f:
        for line in f:
            t, conn, direction, size = line.split()
            conns.setdefault(conn, []).append((float(t), direction, int(size)))
    for conn, chunks in sorted(conns.items(), key=lambda c: int(c[0])):
        turns = server_turns = 0
        client_think = server_think = 0.0
        worst = 0.0
        bytes_cs = sum(size for _, d, size in chunks if d == "cs")
        bytes_sc = sum(size for _, d, size in chunks if d == "sc")
        last = None  # (time, direction) of the previous chunk
        for t, direction, _ in chunks:
            sent = t - delay  # when the proxy read it: its sender wrote it then
            if last and last[1] != direction:
                think = max(0.0, sent - last[0])
                if direction == "cs":
                    turns += 1
                    client_think += think
                    worst = max(worst, think)
                else:
                    server_turns += 1
                    server_think += think
            last = (t, direction)
        span = chunks[-1][0] - chunks[0][0]
        print(
            f"conn {conn}: {span * 1000:.0f} ms from first to last chunk, {turns} client turns "
            f"(a write after a reply: one round trip each), client think {client_think * 1000:.0f} ms "
            f"({client_think * 1000 / max(turns, 1):.2f} ms per turn, worst {worst * 1000:.1f}), "
            f"server think {server_think * 1000:.0f} ms; {bytes_cs} bytes up, {bytes_sc} down"
        )
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", type=parse_addr, default=("127.0.0.1", 0), help="[HOST:]PORT (default 127.0.0.1:0)")
    p.add_argument("--upstream", type=parse_addr, help="[HOST:]PORT to forward to (host default 127.0.0.1)")
    p.add_argument("--delay-ms", type=float, default=25.0, help="one-way delay per chunk (default 25)")
    p.add_argument(
        "--connect-delay-ms",
        type=float,
        help="delay before the upstream connection is made (default 3 x --delay-ms, as a TCP handshake)",
    )
    p.add_argument("--log", help="append one timestamped line per forwarded chunk to this file")
    p.add_argument("--analyse", metavar="LOG", help="summarise a --log file (round trips, think times) and exit")
    p.add_argument("--self-test", action="store_true", help="measure the RTT through an echo server and exit")
    args = p.parse_args()
    if args.delay_ms < 0:
        p.error("--delay-ms must be >= 0")
    delay = args.delay_ms / 1000
    if args.connect_delay_ms is not None and args.connect_delay_ms < 0:
        p.error("--connect-delay-ms must be >= 0")
    connect_delay = 3 * delay if args.connect_delay_ms is None else args.connect_delay_ms / 1000
    if args.analyse:
        return analyse(args.analyse, delay)
    log = Log(args.log)
    if args.self_test:
        return self_test(delay, connect_delay, log)
    if not args.upstream:
        p.error("--upstream is required (or --self-test)")
    port = start_proxy(args.listen, args.upstream, delay, connect_delay, log)
    print(f"PORT={port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
