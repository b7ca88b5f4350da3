#!/usr/bin/env python3
"""mailsend interop checks: the real binary against a real Postfix, a
recording SMTP server and a scripted fault server.

Started by run.sh, which installs Postfix, builds the PKI and starts the
private Postfix instance; everything it needs comes in INTEROP_* variables.
The independent MIME parser is Python's stdlib `email` package with
policy=email.policy.default.

Prints one line per check, `ok - name` or `not ok - name: details`, and
writes the counts to $INTEROP_COUNTS and the fault matrix to
$INTEROP_MATRIX. It prints no closing line: run.sh does, adding its own
setup checks.
"""

from __future__ import annotations

import base64
import email
import email.policy
import email.utils
import hashlib
import http.server
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from smtpfault import Scenario, ScriptedServer, free_port  # noqa: E402

ENV = os.environ
BIN = ENV["INTEROP_BIN"]
WORK = Path(ENV["INTEROP_WORK"])
PKI = Path(ENV["INTEROP_PKI"])
MAILDIR = Path(ENV["INTEROP_MAILDIR"])
POSTFIX_LOG = Path(ENV["INTEROP_POSTFIX_LOG"])
PORT_SUB = int(ENV["INTEROP_PORT_SUBMISSION"])
PORT_SMTPS = int(ENV["INTEROP_PORT_SMTPS"])
PORT_PLAIN = int(ENV["INTEROP_PORT_PLAIN"])
PORT_LIMITS = int(ENV["INTEROP_PORT_LIMITS"])
PORT_LOGIN = int(ENV["INTEROP_PORT_LOGIN"])
# Postfix with Dovecot as SASL server (XOAUTH2, OAUTHBEARER); empty when
# Dovecot could not be started (run.sh then says so).
PORT_OAUTH = int(ENV["INTEROP_PORT_OAUTH"]) if ENV.get("INTEROP_PORT_OAUTH") else None
PORT_INTROSPECT = int(ENV.get("INTEROP_PORT_INTROSPECT") or 0)
DOVECOT_LOG = Path(ENV.get("INTEROP_DOVECOT_LOG", "/nonexistent"))
PASSWORD = Path(ENV["INTEROP_PASSWORD_FILE"]).read_text()
USER = "sender@example.test"
# The scripted servers accept any credentials; this one must never be printed either.
# mailsend hides any 4 characters of a password from server replies (case and
# white space ignored), so a random part of letters alone would now and then
# match a word of a reply ("nd of" in "end of data") and turn it into
# <redacted>: every 4 characters of it hold a "~", which no reply has.
FAKE_PASSWORD = "Sekr3t-scripted-" + "".join(random.choice("abcdefghjkmnpqrstuvwxyz") + "~" for _ in range(12))
CA = str(PKI / "ca.pem")
RUNDIR = WORK / "run"  # mailsend's cwd: no .env there
FILES = WORK / "files"

POLICY = email.policy.default


# ---------------------------------------------------------------- harness

class Check:
    def __init__(self, name: str):
        self.name = name
        self.problems: list[str] = []

    def expect(self, cond, problem: str) -> bool:
        if not cond:
            self.problems.append(problem)
        return bool(cond)

    def equal(self, got, want, what: str) -> bool:
        return self.expect(got == want, f"{what}: got {short(got)}, want {short(want)}")


RESULTS: list[tuple[str, bool]] = []
MATRIX: list[dict] = []


def short(value, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 20] + f"...<{len(text)} chars>"


def one_line(text: str) -> str:
    return " | ".join(part for part in text.splitlines() if part.strip())


SUITE_START = time.monotonic()
# A hung binary or server must not stall CI: past this budget the remaining
# checks fail without running.
BUDGET = float(ENV.get("INTEROP_BUDGET_SECONDS", "240"))


def run_check(name: str, fn: Callable[[Check], None]) -> None:
    c = Check(name)
    try:
        if time.monotonic() - SUITE_START > BUDGET:
            c.problems.append(f"not run: the suite's time budget of {BUDGET:.0f}s is spent")
        else:
            fn(c)
    except Exception as e:  # a harness error fails the check, with its cause
        tb = traceback.extract_tb(e.__traceback__)[-1]
        c.problems.append(f"exception {type(e).__name__}: {e} (line {tb.lineno})")
    ok = not c.problems
    RESULTS.append((name, ok))
    if ok:
        print(f"ok - {name}", flush=True)
    else:
        print(f"not ok - {name}: {one_line('; '.join(c.problems))}", flush=True)


@dataclass
class Run:
    args: list[str]
    code: int
    stdout: str
    stderr: str
    elapsed: float
    started: float  # wall clock
    finished: float

    @property
    def json(self) -> Optional[dict]:
        for line in self.stdout.splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except ValueError:
                    return None
        return None

    def error_lines(self) -> list[str]:
        return [l for l in self.stderr.splitlines() if l.startswith("mailsend: error: ")]

    def describe(self) -> str:
        return f"exit {self.code}, stderr {short(self.stderr.strip(), 400)}"


def mailsend(args: list[str], env: Optional[dict] = None, stdin: bytes = b"", timeout: float = 40) -> Run:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("MAILSEND_", "INTEROP_"))}
    # No config file of the machine or the user may leak in: an explicit
    # empty one (/dev/null is accepted as such), and a private HOME.
    e.update({"HOME": str(RUNDIR), "XDG_CONFIG_HOME": str(RUNDIR / "xdg"), "MAILSEND_CONFIG": "/dev/null"})
    e.update(env or {})
    started = time.time()
    t0 = time.monotonic()
    p = subprocess.run(
        [BIN, *args], input=stdin, cwd=RUNDIR, env=e, capture_output=True, timeout=timeout
    )
    elapsed = time.monotonic() - t0
    return Run(
        args, p.returncode, p.stdout.decode("utf-8", "replace"),
        p.stderr.decode("utf-8", "replace"), elapsed, started, time.time(),
    )


def creds(password: str = None) -> dict:
    return {"MAILSEND_USER": USER, "MAILSEND_PASSWORD": PASSWORD if password is None else password}


def postfix(port: int, tls: str = "starttls", ca: bool = True) -> list[str]:
    args = ["--host", "localhost", "--port", str(port), "--tls", tls, "--timeout", "10s"]
    if ca and tls != "none":
        args += ["--ca-file", CA]
    return args


def scripted(server: ScriptedServer, tls: str = "starttls") -> list[str]:
    args = ["--host", "localhost", "--port", str(server.port), "--tls", tls, "--timeout", "10s"]
    if tls != "none":
        args += ["--ca-file", CA]
    return args


def secret_forms(password: str) -> list[str]:
    forms = [password, base64.b64encode(password.encode()).decode()]
    forms.append(base64.b64encode(f"\0{USER}\0{password}".encode()).decode())
    return forms


def no_secret(c: Check, run: Run, password: str) -> None:
    out = run.stdout + run.stderr
    for form in secret_forms(password):
        if form in out:
            c.problems.append("the password (or its base64 form) appears in mailsend's output")
            return


# ---------------------------------------------------------------- Maildir

_parsed: dict[str, tuple[Optional[str], email.message.EmailMessage]] = {}


def _scan() -> None:
    for sub in ("new", "cur"):
        d = MAILDIR / sub
        if not d.is_dir():
            continue
        for f in d.iterdir():
            key = f.name
            if key in _parsed:
                continue
            with open(f, "rb") as fh:
                msg = email.message_from_binary_file(fh, policy=POLICY)
            _parsed[key] = (str(msg.get("Message-ID", "")).strip(), msg)


def delivered(message_id: str, count: int, timeout: float = 10.0) -> list[email.message.EmailMessage]:
    """Copies of a message in the Maildir; waits until `count` arrived or timeout."""
    deadline = time.monotonic() + timeout
    while True:
        _scan()
        found = [m for mid, m in _parsed.values() if mid == message_id]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def by_recipient(copies) -> dict[str, email.message.EmailMessage]:
    return {str(m["Delivered-To"]).strip().lower(): m for m in copies}


def log_offset() -> int:
    try:
        return POSTFIX_LOG.stat().st_size
    except OSError:
        return 0


def log_since(offset: int) -> str:
    with open(POSTFIX_LOG, "rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace")


# ---------------------------------------------------------------- shared checks

def sent_ok(c: Check, run: Run, accepted: list[str], tls: Optional[str] = "TLSv1.") -> Optional[dict]:
    if not c.equal(run.code, 0, f"exit code ({run.describe()})"):
        return None
    j = run.json
    if not c.expect(j is not None, f"no JSON on stdout: {short(run.stdout)}"):
        return None
    c.equal(sorted(j.get("accepted", [])), sorted(accepted), "JSON accepted")
    c.equal(j.get("rejected"), [], "JSON rejected")
    c.expect(str(j.get("reply", "")).startswith("250"), f"JSON reply {short(j.get('reply'))}")
    if tls is None:
        c.equal(j.get("tls"), None, "JSON tls")
    else:
        c.expect(str(j.get("tls", "")).startswith(tls), f"JSON tls {short(j.get('tls'))}")
    c.expect(re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", j.get("message_id", "")),
             f"JSON message_id {short(j.get('message_id'))}")
    return j


def addresses(msg, header: str) -> list[tuple[str, str]]:
    h = msg[header]
    if h is None:
        return []
    return [(a.display_name, a.addr_spec) for a in h.addresses]


def headers_as_sent(c: Check, msg, run: Run, j: dict, want: dict) -> None:
    """want: header -> list of (display name, address) or, for Subject, a string."""
    for name, value in want.items():
        if name == "Subject":
            c.equal(str(msg["Subject"]), value, "Subject")
        else:
            c.equal(addresses(msg, name), value, name)
    c.equal(str(msg["Message-ID"]).strip(), j["message_id"], "Message-ID")
    for name in ("Date", "Message-ID", "From", "Subject"):
        n = len(msg.get_all(name) or [])
        c.equal(n, 1, f"number of {name} headers")
    date = msg["Date"]
    if c.expect(date is not None and date.datetime is not None, f"Date {short(str(date))} unparsable"):
        ts = date.datetime.timestamp()
        c.expect(run.started - 2 <= ts <= run.finished + 2,
                 f"Date {date} is not the time of sending")
        c.expect(date.datetime.tzinfo is not None, "Date without time zone")
    c.expect(msg.get_all("Bcc") is None, "a delivered copy shows a Bcc header")


def text_body(msg, c: Optional[Check] = None, kind: str = "plain") -> Optional[str]:
    """The decoded text part with local (LF) line endings.

    Postfix stores messages with LF, so 7bit and quoted-printable parts
    decode with LF; a base64 text part decodes to its canonical form, which
    RFC 2045 section 6.8 requires to use CRLF. With `c`, a base64 part that
    is not in canonical form (a bare LF or CR inside) is reported.
    """
    part = msg.get_body(preferencelist=(kind,))
    if part is None:
        return None
    text = part.get_content()
    if part.get("Content-Transfer-Encoding", "").strip().lower() == "base64":
        if c is not None:
            c.expect(not re.search(r"\r(?!\n)|(?<!\r)\n", text),
                     f"base64 {kind} part is not in canonical CRLF form: {short(text)}")
        text = text.replace("\r\n", "\n")
    return text


def expect_failure(c: Check, run: Run, code: int, must_contain: list[str], password: Optional[str],
                   max_seconds: float = 30) -> None:
    c.equal(run.code, code, f"exit code ({run.describe()})")
    errs = run.error_lines()
    c.equal(len(errs), 1, f"number of 'mailsend: error:' lines in {short(run.stderr)}")
    others = [l for l in run.stderr.splitlines()
              if l.strip() and not l.startswith(("mailsend: error: ", "mailsend: hint: "))]
    c.equal(others, [], "other stderr lines")
    line = errs[0] if errs else ""
    for piece in must_contain:
        c.expect(piece in line, f"error line lacks {piece!r}: {short(line, 300)}")
    c.expect(run.elapsed <= max_seconds, f"took {run.elapsed:.1f}s (limit {max_seconds}s)")
    if password:
        no_secret(c, run, password)


def matrix(case: str, server: str, expected: int, run: Optional[Run]) -> None:
    if run is None:
        MATRIX.append({"case": case, "server": server, "expected": expected, "got": None, "printed": "(not run)"})
        return
    printed = "<br>".join(l for l in run.stderr.splitlines() if l.strip()) or "(nothing)"
    MATRIX.append({"case": case, "server": server, "expected": expected, "got": run.code, "printed": printed})


# ---------------------------------------------------------------- test data

def make_files() -> dict[str, Path]:
    RUNDIR.mkdir(parents=True, exist_ok=True)
    FILES.mkdir(parents=True, exist_ok=True)
    f = {}
    f["big"] = FILES / "random-5MB.bin"
    f["big"].write_bytes(os.urandom(5 * 1024 * 1024))
    f["intl"] = FILES / "Prüfbericht März – Ünïcødé 日本.pdf"
    f["intl"].write_bytes(os.urandom(3000))
    f["html"] = FILES / "body.html"
    f["html"].write_text("<html><body><p>Grüße, <b>HTML</b> part ✓</p></body></html>\n", encoding="utf-8")
    f["oversize"] = FILES / "oversize.bin"
    f["oversize"].write_bytes(os.urandom(200 * 1024))
    f["crlf"] = FILES / "body-crlf.txt"
    f["crlf"].write_bytes(BODY_LINES_LF.replace(b"\n", b"\r\n"))
    return f


EDGE_BODY = (
    ".leading dot\n"
    ".\n"
    "..two dots\n"
    "From the start of a line\n"
    ">From already quoted\n"
    " .space then dot\n"
    "\n"
    "last line without newline"
)
LONG_LINE = "".join(f"{i % 10}" for i in range(10_000))
LONG_BODY = "before\n" + LONG_LINE + "\n.\nafter\n"
BODY_LINES_LF = b"line one\nline two\n\nline four, then an empty line\n\n"
UTF8_SUBJECT = ("Grüße aus Köln – ✓ 日本語のテスト 🎉 and a fairly long subject "
                "that needs folding across several encoded words")
UTF8_BODY = "Grüße, Zoë!\n日本語のテキスト。\nEmoji: 🎉 ünd ß\n"


# ---------------------------------------------------------------- Postfix delivery

def t_submission(c: Check) -> None:
    run = mailsend(postfix(PORT_SUB) + [
        "--from", "Sender Person <sender@example.test>",
        "--to", "Bob Example <bob@example.test>",
        "--cc", "Carol <carol@example.test>",
        "--bcc", "hidden@example.test",
        "--subject", "submission port check",
        "--body", "hello over submission\n", "--json"], env=creds())
    no_secret(c, run, PASSWORD)
    j = sent_ok(c, run, ["bob@example.test", "carol@example.test", "hidden@example.test"])
    if not j:
        return
    copies = by_recipient(delivered(j["message_id"], 3))
    c.equal(sorted(copies), ["bob@example.test", "carol@example.test", "hidden@example.test"],
            "Delivered-To of the copies in the Maildir")
    STATE["submission"] = (run, j, copies)
    for rcpt, msg in copies.items():
        c.equal(text_body(msg), "hello over submission\n", f"body of {rcpt}'s copy")
        c.expect("with ESMTPSA" in str(msg["Received"]),
                 f"Received does not show TLS+AUTH (ESMTPSA): {short(str(msg['Received']))}")


def t_submission_headers(c: Check) -> None:
    if not c.expect("submission" in STATE, "the submission message did not arrive"):
        return
    run, j, copies = STATE["submission"]
    for rcpt, msg in copies.items():
        headers_as_sent(c, msg, run, j, {
            "From": [("Sender Person", "sender@example.test")],
            "To": [("Bob Example", "bob@example.test")],
            "Cc": [("Carol", "carol@example.test")],
            "Subject": "submission port check",
        })
        if c.problems:
            c.problems.insert(0, f"in {rcpt}'s copy")
            return


def t_bcc(c: Check) -> None:
    if not c.expect("submission" in STATE, "the submission message did not arrive"):
        return
    _, _, copies = STATE["submission"]
    c.expect("hidden@example.test" in copies, "no copy delivered to the Bcc recipient")
    for rcpt, msg in copies.items():
        c.expect(msg.get_all("Bcc") is None, f"{rcpt}'s copy has a Bcc header")
        raw = msg.as_bytes(policy=POLICY.clone(linesep="\n"))
        c.expect(b"hidden@example.test" not in raw.split(b"\n\n", 1)[0].replace(
            b"Delivered-To: hidden@example.test", b"").replace(
            b"X-Original-To: hidden@example.test", b"").replace(
            b"for <hidden@example.test>", b""),
            f"the Bcc address shows in the headers of {rcpt}'s copy")


def simple_port(port: int, tls: str, use_creds: bool, received: str, tls_json: Optional[str]):
    def t(c: Check) -> None:
        subject = f"{tls} port {port} check"
        run = mailsend(postfix(port, tls) + [
            "--from", "Sender <sender@example.test>", "--to", "Dave <dave@example.test>",
            "--cc", "erin@example.test", "--subject", subject,
            "--body", f"hello over {tls}\n", "--json"], env=creds() if use_creds else None)
        if use_creds:
            no_secret(c, run, PASSWORD)
        j = sent_ok(c, run, ["dave@example.test", "erin@example.test"], tls=tls_json)
        if not j:
            return
        copies = by_recipient(delivered(j["message_id"], 2))
        c.equal(sorted(copies), ["dave@example.test", "erin@example.test"], "Delivered-To of the copies")
        for rcpt, msg in copies.items():
            headers_as_sent(c, msg, run, j, {
                "From": [("Sender", "sender@example.test")],
                "To": [("Dave", "dave@example.test")],
                "Cc": [("", "erin@example.test")],
                "Subject": subject,
            })
            c.equal(text_body(msg), f"hello over {tls}\n", "body")
            c.expect(f"with {received} id" in str(msg["Received"]),
                     f"Received does not say {received}: {short(str(msg['Received']))}")
    return t


def t_submission_needs_auth(c: Check) -> None:
    run = mailsend(postfix(PORT_SUB) + ["--from", "sender@example.test", "--to", "bob@example.test",
                                        "--subject", "no auth", "--body", "x", "--json"])
    c.equal(run.code, 69, f"exit code ({run.describe()})")
    c.expect("554" in run.stderr and "bob@example.test" in run.stderr,
             f"no 554 refusal of the recipient on stderr: {short(run.stderr)}")


def t_utf8(c: Check) -> None:
    run = mailsend(postfix(PORT_SUB) + [
        "--from", "Zoë Müller <sender@example.test>",
        "--to", '"Müller, Zoë" <zoe@example.test>',
        "--cc", "Ђорђе Петровић <djordje@example.test>",
        "--subject", UTF8_SUBJECT, "--body", UTF8_BODY, "--json"], env=creds())
    j = sent_ok(c, run, ["zoe@example.test", "djordje@example.test"])
    if not j:
        return
    copies = by_recipient(delivered(j["message_id"], 2))
    c.equal(sorted(copies), ["djordje@example.test", "zoe@example.test"], "Delivered-To of the copies")
    for rcpt, msg in copies.items():
        headers_as_sent(c, msg, run, j, {
            "From": [("Zoë Müller", "sender@example.test")],
            "To": [("Müller, Zoë", "zoe@example.test")],
            "Cc": [("Ђорђе Петровић", "djordje@example.test")],
            "Subject": UTF8_SUBJECT,
        })
        c.equal(text_body(msg, c), UTF8_BODY, "decoded body")
        STATE.setdefault("cte", {})["utf8"] = str(msg.get("Content-Transfer-Encoding", ""))
        c.equal(msg.get_content_type(), "text/plain", "Content-Type")
        c.equal(msg.get_content_charset(), "utf-8", "charset")


def body_check(body_args: list[str], stdin: bytes, want: str, what: str):
    def t(c: Check) -> None:
        run = mailsend(postfix(PORT_SUB) + [
            "--from", "sender@example.test", "--to", "body@example.test",
            "--subject", what, "--json"] + body_args, env=creds(), stdin=stdin)
        j = sent_ok(c, run, ["body@example.test"])
        if not j:
            return
        copies = delivered(j["message_id"], 1)
        if not c.equal(len(copies), 1, "copies delivered"):
            return
        got = text_body(copies[0], c)
        c.equal(got, want, "decoded body")
        STATE.setdefault("cte", {})[what] = str(copies[0].get("Content-Transfer-Encoding", ""))
    return t


def t_attachments(c: Check) -> None:
    run = mailsend(postfix(PORT_SUB) + [
        "--from", "sender@example.test", "--to", "files@example.test",
        "--subject", "attachments", "--body", "see attached ✓\n",
        "--html", str(F["html"]), "--attach", str(F["big"]), "--attach", str(F["intl"]),
        "--json"], env=creds(), timeout=120)
    j = sent_ok(c, run, ["files@example.test"])
    if not j:
        return
    copies = delivered(j["message_id"], 1, timeout=20)
    if not c.equal(len(copies), 1, "copies delivered"):
        return
    STATE["attachments"] = copies[0]


def t_attach_big(c: Check) -> None:
    msg = STATE.get("attachments")
    if not c.expect(msg is not None, "the attachment message did not arrive"):
        return
    atts = {a.get_filename(): a for a in msg.iter_attachments()}
    part = atts.get(F["big"].name)
    if not c.expect(part is not None, f"no attachment named {F['big'].name}; have {sorted(atts)}"):
        return
    data = part.get_content()
    c.equal(hashlib.sha256(data).hexdigest(), hashlib.sha256(F["big"].read_bytes()).hexdigest(),
            "SHA-256 of the decoded 5 MB attachment")
    c.equal(len(data), 5 * 1024 * 1024, "size")


def t_attach_intl(c: Check) -> None:
    msg = STATE.get("attachments")
    if not c.expect(msg is not None, "the attachment message did not arrive"):
        return
    atts = {a.get_filename(): a for a in msg.iter_attachments()}
    part = atts.get(F["intl"].name)
    if not c.expect(part is not None, f"no attachment named {F['intl'].name!r}; have {sorted(atts)}"):
        return
    c.equal(hashlib.sha256(part.get_content()).hexdigest(),
            hashlib.sha256(F["intl"].read_bytes()).hexdigest(), "SHA-256")
    c.equal(part.get_content_type(), "application/pdf", "content type")
    c.equal(part.get_content_disposition(), "attachment", "disposition")


def t_alternative(c: Check) -> None:
    msg = STATE.get("attachments")
    if not c.expect(msg is not None, "the attachment message did not arrive"):
        return
    c.equal(msg.get_content_type(), "multipart/mixed", "top-level type")
    alts = [p for p in msg.walk() if p.get_content_type() == "multipart/alternative"]
    if not c.equal(len(alts), 1, "multipart/alternative parts"):
        return
    kinds = [p.get_content_type() for p in alts[0].iter_parts()]
    c.equal(kinds, ["text/plain", "text/html"], "parts of the alternative")
    c.equal(text_body(msg, c), "see attached ✓\n", "text part")
    c.equal(text_body(msg, c, "html"), F["html"].read_text(encoding="utf-8"), "HTML part")


def t_verbose_redacts(c: Check) -> None:
    for port, mech in ((PORT_SUB, "AUTH PLAIN"), (PORT_LOGIN, "AUTH LOGIN")):
        run = mailsend(postfix(port) + ["--from", "sender@example.test", "--to", "verbose@example.test",
                                        "--subject", "verbose", "--body", "x", "-v"], env=creds())
        c.equal(run.code, 0, f"exit code on port {port} ({run.describe()})")
        lines = run.stderr.splitlines()
        c.expect(any(l.startswith(f"-> {mech}") for l in lines), f"no '-> {mech}' in the -v transcript")
        c.expect(any(l.startswith("<- 235") for l in lines), "no 235 reply in the -v transcript")
        no_secret(c, run, PASSWORD)
        for prev, line in zip(lines, lines[1:]):
            if line.startswith("-> AUTH PLAIN"):
                c.equal(line, "-> AUTH PLAIN <redacted>", "AUTH PLAIN transcript line")
            if prev.startswith("<- 334") and line.startswith("-> "):
                c.equal(line, "-> <redacted>", "answer to a 334 challenge in the transcript")


def t_login_only(c: Check) -> None:
    run = mailsend(postfix(PORT_LOGIN) + ["--from", "sender@example.test", "--to", "login@example.test",
                                          "--subject", "auth login", "--body", "via LOGIN\n", "--json"],
                   env=creds())
    no_secret(c, run, PASSWORD)
    j = sent_ok(c, run, ["login@example.test"])
    if j:
        copies = delivered(j["message_id"], 1)
        c.equal(len(copies), 1, "copies delivered")
        if copies:
            c.equal(text_body(copies[0]), "via LOGIN\n", "body")


# ---------------------------------------------------------------- OAuth2 (Postfix + Dovecot)

# The access token the introspection endpoint says is active for USER.
GOOD_TOKEN = "ya29.interop-" + "".join(random.choice("abcdefghjkmnpqrstuvwxyz0123456789") for _ in range(40))
BAD_TOKEN = "ya29.expired-" + "".join(random.choice("abcdefghjkmnpqrstuvwxyz0123456789") for _ in range(40))
INTROSPECTED: list[str] = []


class Introspection(http.server.BaseHTTPRequestHandler):
    """RFC 7662 token introspection, as Dovecot's oauth2 passdb asks it
    (introspection_mode = post: `token=...` in a form body)."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
        token = form.get("token", [""])[0]
        INTROSPECTED.append(token)
        if token == GOOD_TOKEN:
            body = {"active": True, "username": USER, "scope": "mail"}
        else:
            body = {"active": False}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def start_introspection() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT_INTROSPECT), Introspection)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def token_command(token: str) -> str:
    path = FILES / f"token-{hashlib.sha256(token.encode()).hexdigest()[:8]}"
    path.write_text(token + "\n")
    return f"cat '{path}'"


def no_token(c: Check, run: Run) -> None:
    out = run.stdout + run.stderr
    for token in (GOOD_TOKEN, BAD_TOKEN):
        for form in (token, base64.b64encode(token.encode()).decode(), token[5:25]):
            if form in out:
                c.problems.append("the token (or its base64 form) appears in mailsend's output")
                return


def oauth_send(auth: str, wire: str):
    def check(c: Check) -> None:
        if not c.expect(PORT_OAUTH, "no Postfix + Dovecot port (Dovecot did not start)"):
            return
        before = len(INTROSPECTED)
        rcpt = f"oauth-{auth}@example.test"
        run = mailsend(postfix(PORT_OAUTH) + [
            "--auth", auth, "--oauth-token-command", token_command(GOOD_TOKEN),
            "--from", USER, "--to", rcpt, "--subject", f"oauth {auth}",
            "--body", f"sent with {wire}\n", "--json", "-v"],
            env={"MAILSEND_USER": USER, "MAILSEND_PASSWORD": PASSWORD})
        no_token(c, run)
        c.expect(f"-> AUTH {wire} <redacted>" in run.stderr.splitlines(),
                 f"no '-> AUTH {wire} <redacted>' in the transcript: {short(run.stderr, 600)}")
        c.expect(GOOD_TOKEN in INTROSPECTED[before:], "Dovecot never asked the introspection endpoint")
        j = sent_ok(c, run, [rcpt])
        if not j:
            return
        copies = delivered(j["message_id"], 1)
        if c.equal(len(copies), 1, "copies in the Maildir"):
            c.equal(text_body(copies[0]), f"sent with {wire}\n", "body")
            c.expect("with ESMTPSA" in str(copies[0]["Received"]),
                     f"Received does not show TLS+AUTH: {short(str(copies[0]['Received']))}")
    return check


def oauth_refused(auth: str, wire: str, decoded: str):
    def check(c: Check) -> None:
        if not c.expect(PORT_OAUTH, "no Postfix + Dovecot port (Dovecot did not start)"):
            return
        run = mailsend(postfix(PORT_OAUTH) + [
            "--auth", auth, "--oauth-token-command", token_command(BAD_TOKEN),
            "--from", USER, "--to", "never@example.test", "--subject", "refused", "--body", "x"],
            env={"MAILSEND_USER": USER})
        expect_failure(c, run, 77, [f"server refused AUTH {wire}: 535", f"(token error: {decoded}"],
                       None, max_seconds=8)
        no_token(c, run)
        c.expect("eyJ" not in "".join(run.error_lines()), "the error line quotes base64")
        for line in run.error_lines():
            print(f"# {wire}, refused token: {line}", flush=True)
        c.expect(BAD_TOKEN in INTROSPECTED, "Dovecot never asked the introspection endpoint")
    return check


# ---------------------------------------------------------------- on the wire (recording server)

def wire_send(c: Check, args: list[str], stdin: bytes = b"", pipelining: bool = False):
    with ScriptedServer(Scenario(pipelining=pipelining)) as srv:
        run = mailsend(scripted(srv, "none") + ["--from", "sender@example.test", "--json"] + args, stdin=stdin)
    if not c.equal(run.code, 0, f"exit code ({run.describe()})"):
        return None, None, None
    if not c.equal(len(srv.sessions), 1, "sessions at the recording server"):
        return None, None, None
    s = srv.sessions[0]
    if not c.equal(len(s.data), 1, "DATA transactions"):
        return None, None, None
    return run, s, s.data[0]


def split_wire(data: bytes) -> tuple[bytes, bytes]:
    head, sep, rest = data.partition(b"\r\n\r\n")
    return head, rest


def unstuff(body: bytes) -> bytes:
    assert body.endswith(b".\r\n")
    lines = body[:-3].split(b"\r\n")
    return b"\r\n".join(l[1:] if l.startswith(b".") else l for l in lines)


def t_wire_bcc(c: Check) -> None:
    run, s, data = wire_send(c, ["--to", "Bob <bob@example.test>", "--bcc", "Hidden Person <hidden@example.test>",
                                 "--subject", "bcc on the wire", "--body", "bcc\n"], pipelining=True)
    if data is None:
        return
    rcpts = [cmd for cmd in s.commands if cmd.upper().startswith("RCPT TO:")]
    c.equal(rcpts, ["RCPT TO:<bob@example.test>", "RCPT TO:<hidden@example.test>"], "RCPT commands")
    head, _ = split_wire(data)
    c.expect(not re.search(rb"(?im)^bcc:", head), "a Bcc: header line was transmitted")
    c.expect(b"hidden" not in data.lower(), "the Bcc address or name appears in the transmitted message")
    msg = email.message_from_bytes(data, policy=POLICY)
    c.equal(str(msg["Message-ID"]), run.json["message_id"], "Message-ID on the wire vs --json")


def t_wire_lf(c: Check) -> None:
    run, s, data = wire_send(c, ["--to", "wire@example.test", "--subject", "edge cases on the wire"],
                             stdin=EDGE_BODY.encode())
    if data is None:
        return
    c.expect(not re.search(rb"(?<!\r)\n", data), "bare LF in DATA")
    c.expect(not re.search(rb"\r(?!\n)", data), "bare CR in DATA")
    c.expect(data.endswith(b"\r\n.\r\n"), f"DATA does not end with CRLF.CRLF: {short(data[-20:])}")
    STATE["wire_edge"] = data


def t_wire_dots(c: Check) -> None:
    data = STATE.get("wire_edge")
    if not c.expect(data is not None, "edge-case message not recorded"):
        return
    _, body = split_wire(data)
    want_stuffed = (b"..leading dot\r\n..\r\n...two dots\r\nFrom the start of a line\r\n"
                    b">From already quoted\r\n .space then dot\r\n\r\nlast line without newline\r\n.\r\n")
    c.equal(body, want_stuffed, "body as transmitted (dot-stuffed)")
    c.expect(b"\r\n.\r\n" not in data[:-5] and not data.startswith(b".\r\n"),
             "a premature end-of-data line in the transmission")


def t_wire_no_newline(c: Check) -> None:
    data = STATE.get("wire_edge")
    if not c.expect(data is not None, "edge-case message not recorded"):
        return
    _, body = split_wire(data)
    c.expect(body.endswith(b"\r\nlast line without newline\r\n.\r\n"),
             f"end of body: {short(body[-40:])}")


def t_wire_crlf(c: Check) -> None:
    run, s, data = wire_send(c, ["--to", "wire@example.test", "--subject", "crlf input",
                                 "--body-file", str(F["crlf"])])
    if data is None:
        return
    _, body = split_wire(data)
    c.equal(unstuff(body), BODY_LINES_LF.replace(b"\n", b"\r\n"), "body on the wire from CRLF input")
    c.expect(b"\r\r\n" not in data, "CR CR LF on the wire (line endings doubled)")
    run2, s2, data2 = wire_send(c, ["--to", "wire@example.test", "--subject", "crlf input",
                                    "--body-file", "-"], stdin=BODY_LINES_LF)
    if data2 is None:
        return
    c.equal(split_wire(data2)[1], body, "body on the wire from the same text with LF endings")


def t_wire_headers_crlf(c: Check) -> None:
    data = STATE.get("wire_edge")
    if not c.expect(data is not None, "edge-case message not recorded"):
        return
    head, _ = split_wire(data)
    names = [l.split(b":", 1)[0].lower() for l in head.split(b"\r\n") if l and l[:1] not in b" \t"]
    for h in (b"date", b"message-id", b"from", b"to", b"subject", b"mime-version"):
        c.equal(names.count(h), 1, f"count of {h.decode()} header lines")


# ---------------------------------------------------------------- fault matrix

def fault(case: str, server: str, expected: int, body: Callable[[Check], Optional[Run]]):
    def t(c: Check) -> None:
        run = None
        try:
            run = body(c)
        finally:
            matrix(case, server, expected, run)
    return f"fault: {case} -> {expected}", t


def std_args(*extra: str) -> list[str]:
    return ["--from", "sender@example.test", "--to", "bob@example.test", "--subject", "fault",
            "--body", "fault case\n", *extra]


def f_refused(c: Check) -> Run:
    port = free_port()
    run = mailsend(["--host", "127.0.0.1", "--port", str(port), "--timeout", "5s", "--ca-file", CA] + std_args(),
                   env=creds(FAKE_PASSWORD))
    expect_failure(c, run, 75, ["cannot connect", "Connection refused"], FAKE_PASSWORD, max_seconds=5)
    return run


def f_silent(c: Check) -> Run:
    with ScriptedServer(Scenario(greeting=None)) as srv:
        args = scripted(srv)
        args[args.index("--timeout") + 1] = "2s"
        run = mailsend(args + std_args(), env=creds(FAKE_PASSWORD))
    expect_failure(c, run, 75, ["no answer", "2s", "greeting"], FAKE_PASSWORD, max_seconds=5)
    c.expect(run.elapsed >= 1.5, f"gave up after {run.elapsed:.2f}s, before the 2s timeout")
    return run


def f_greet421(c: Check) -> Run:
    text = "421 4.3.2 fault.interop.invalid Service not available, closing channel"
    with ScriptedServer(Scenario(greeting=text, close_after_greeting=True)) as srv:
        run = mailsend(scripted(srv) + std_args(), env=creds(FAKE_PASSWORD))
    expect_failure(c, run, 75, [text], FAKE_PASSWORD)
    return run


def f_no_starttls(c: Check) -> Run:
    with ScriptedServer(Scenario(starttls=False, auth="PLAIN LOGIN")) as srv:
        run = mailsend(scripted(srv) + std_args(), env=creds(FAKE_PASSWORD))
    expect_failure(c, run, 76, ["does not offer STARTTLS"], FAKE_PASSWORD)
    cmds = [cmd for s in srv.sessions for cmd in s.commands]
    c.expect(not any(x.upper().startswith("AUTH") for x in cmds), f"AUTH sent in clear: {cmds}")
    c.expect(not any(x.upper().startswith(("MAIL", "RCPT", "DATA")) for x in cmds), f"mail sent in clear: {cmds}")
    c.expect(not any(FAKE_PASSWORD in x or any(f in x for f in secret_forms(FAKE_PASSWORD)) for x in cmds),
             "the password crossed the wire")
    return run


def f_no_starttls_postfix(c: Check) -> Run:
    run = mailsend(postfix(PORT_PLAIN, "starttls") + std_args(), env=creds())
    expect_failure(c, run, 76, ["does not offer STARTTLS"], PASSWORD)
    return run


def tls_fault(cert: str, must: list[str], implicit: bool = False, chain: bool = True):
    def f(c: Check) -> Run:
        pem = f"{cert}-chain.pem" if chain else f"{cert}.pem"
        sc = Scenario(starttls=not implicit, implicit_tls=implicit,
                      cert=str(PKI / pem), key=str(PKI / f"{cert}.key"))
        with ScriptedServer(sc) as srv:
            run = mailsend(scripted(srv, "tls" if implicit else "starttls") + std_args(), env=creds(FAKE_PASSWORD))
        expect_failure(c, run, 77, ["not trusted"] + must, FAKE_PASSWORD)
        cmds = [cmd for s in srv.sessions for cmd in s.commands]
        c.expect(not any(x.upper().startswith(("AUTH", "MAIL")) for x in cmds), f"sent after a bad handshake: {cmds}")
        return run
    return f


def f_untrusted_postfix(c: Check) -> Run:
    run = mailsend(postfix(PORT_SUB, ca=False) + std_args(), env=creds())
    # Postfix sends its chain, test CA included: OpenSSL calls that a self-signed root.
    expect_failure(c, run, 77, ["not trusted", "self-signed certificate in certificate chain"], PASSWORD)
    return run


def f_auth535(c: Check) -> Run:
    off = log_offset()
    run = mailsend(postfix(PORT_SUB) + std_args(), env=creds("wrong-" + PASSWORD))
    expect_failure(c, run, 77, ["535 5.7.8 Error: authentication failed"], "wrong-" + PASSWORD)
    no_secret(c, run, PASSWORD)
    time.sleep(0.2)
    c.expect("authentication failed" in log_since(off), "Postfix logged no authentication failure")
    return run


def f_rcpt550(c: Check) -> Run:
    run = mailsend(postfix(PORT_SUB) + [
        "--from", "sender@example.test",
        "--to", "ok-one@example.test, refuse550@example.test", "--cc", "ok-two@example.test",
        "--subject", "one refused", "--body", "two of three\n", "--json"], env=creds())
    expect_failure(c, run, 65, ["refuse550@example.test", "550 5.1.1", "no such mailbox (interop)"], PASSWORD)
    j = run.json
    if c.expect(j is not None, "no JSON"):
        c.equal(sorted(j["accepted"]), ["ok-one@example.test", "ok-two@example.test"], "JSON accepted")
        c.equal([(r["address"], r["code"]) for r in j["rejected"]], [("refuse550@example.test", 550)], "JSON rejected")
        copies = by_recipient(delivered(j["message_id"], 2))
        time.sleep(0.3)
        copies = by_recipient(delivered(j["message_id"], 3, timeout=0))
        c.equal(sorted(copies), ["ok-one@example.test", "ok-two@example.test"], "copies delivered")
    return run


def f_rcpt451(c: Check) -> Run:
    run = mailsend(postfix(PORT_SUB) + [
        "--from", "sender@example.test", "--to", "ok-three@example.test, defer451@example.test",
        "--subject", "one deferred", "--body", "x\n", "--json"], env=creds())
    expect_failure(c, run, 75, ["defer451@example.test", "451 4.2.0", "try again later (interop)"], PASSWORD)
    j = run.json
    if c.expect(j is not None, "no JSON"):
        c.equal([(r["address"], r["code"]) for r in j["rejected"]], [("defer451@example.test", 451)], "JSON rejected")
        c.equal(sorted(by_recipient(delivered(j["message_id"], 1))), ["ok-three@example.test"], "copies delivered")
    return run


def f_data554(c: Check) -> Run:
    run = mailsend(postfix(PORT_SUB) + [
        "--from", "reject-eod@example.test", "--to", "bob@example.test",
        "--subject", "refused after data", "--body", "x\n", "--json"], env=creds())
    expect_failure(c, run, 69, ["end of data", "554 5.7.1", "Message refused after end of data (interop policy)"], PASSWORD)
    j = run.json
    if c.expect(j is not None, "no JSON"):
        time.sleep(0.5)
        c.equal(len(delivered(j["message_id"], 1, timeout=0)), 0, "copies delivered")
    return run


def f_too_many(c: Check) -> Run:
    run = mailsend(postfix(PORT_LIMITS) + [
        "--from", "sender@example.test", "--to", "r1@example.test, r2@example.test, r3@example.test",
        "--subject", "too many", "--body", "x\n", "--json"], env=creds())
    expect_failure(c, run, 75, ["r3@example.test", "452 4.5.3", "too many recipients"], PASSWORD)
    j = run.json
    if c.expect(j is not None, "no JSON"):
        c.equal(sorted(j["accepted"]), ["r1@example.test", "r2@example.test"], "JSON accepted")
        c.equal([(r["address"], r["code"]) for r in j["rejected"]], [("r3@example.test", 452)], "JSON rejected")
        c.equal(sorted(by_recipient(delivered(j["message_id"], 2))), ["r1@example.test", "r2@example.test"],
                "copies delivered")
    return run


def f_drop_data(c: Check) -> Run:
    with ScriptedServer(Scenario(starttls=True, cert=str(PKI / "server-chain.pem"), key=str(PKI / "server.key"),
                                 drop_in_data_after=100)) as srv:
        run = mailsend(scripted(srv) + std_args("--attach", str(F["oversize"])), env=creds(FAKE_PASSWORD))
    expect_failure(c, run, 75, ["closed the connection"], FAKE_PASSWORD)
    c.expect(any(s.data for s in srv.sessions), "the server saw no DATA before dropping")
    return run


def f_size_postfix(c: Check) -> Run:
    off = log_offset()
    run = mailsend(postfix(PORT_LIMITS) + std_args("--attach", str(F["oversize"])), env=creds())
    expect_failure(c, run, 69, ["over the server's limit of 100000 bytes"], PASSWORD)
    time.sleep(0.2)
    c.expect(" from=<sender@example.test>" not in log_since(off), "Postfix queued the message anyway")
    return run


def f_size_552(c: Check) -> Run:
    text = "552 5.3.4 Message size exceeds fixed limit"
    with ScriptedServer(Scenario(starttls=True, cert=str(PKI / "server-chain.pem"), key=str(PKI / "server.key"),
                                 data_reply=text)) as srv:
        run = mailsend(scripted(srv) + std_args("--attach", str(F["oversize"])), env=creds(FAKE_PASSWORD))
    expect_failure(c, run, 69, [text], FAKE_PASSWORD)
    return run


def f_creds_plain(c: Check) -> Run:
    with ScriptedServer(Scenario()) as srv:
        run = mailsend(scripted(srv, "none") + std_args(), env=creds(FAKE_PASSWORD))
        time.sleep(0.2)
    expect_failure(c, run, 78, ["TLS mode is none"], FAKE_PASSWORD)
    c.equal(srv.connections, 0, "connections made to the server")
    return run


def f_creds_plain_postfix(c: Check) -> Run:
    off = log_offset()
    run = mailsend(postfix(PORT_PLAIN, "none") + std_args(), env=creds())
    expect_failure(c, run, 78, ["TLS mode is none"], PASSWORD)
    time.sleep(0.3)
    c.expect("postfix/plain/smtpd" not in log_since(off), "mailsend connected to the Postfix plain port")
    return run


# ---------------------------------------------------------------- main

STATE: dict = {}
F: dict[str, Path] = {}


def write_matrix(path: Path) -> None:
    def norm(text: str) -> str:
        for p in (PORT_SUB, PORT_SMTPS, PORT_PLAIN, PORT_LIMITS, PORT_LOGIN):
            text = text.replace(f":{p}", ":PORT")
        text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
        text = re.sub(r"message is \d+ bytes", "message is N bytes", text)
        return text.replace("|", "\\|")

    lines = [
        "# mailsend fault matrix",
        "",
        "Measured by `tests/interop/run.sh` (mailsend against Postfix "
        f"{ENV.get('INTEROP_POSTFIX_VERSION', '?')} and a scripted SMTP server, all on 127.0.0.1).",
        "\"Printed\" is everything mailsend wrote on stderr; ports are replaced by PORT.",
        "",
        "| Case | Server | Expected exit | Got | Printed |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in MATRIX:
        got = "—" if row["got"] is None else str(row["got"])
        if row["got"] is not None and row["got"] != row["expected"]:
            got = f"**{got}**"
        lines.append(f"| {norm(row['case'])} | {row['server']} | {row['expected']} | {got} | "
                     f"`{norm(row['printed']).replace('<br>', '`<br>`')}` |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    F.update(make_files())
    if PORT_OAUTH:
        start_introspection()
    checks: list[tuple[str, Callable]] = [
        ("postfix submission (STARTTLS + AUTH PLAIN): To/Cc/Bcc message delivered", t_submission),
        ("postfix submission: From/To/Cc/Subject/Date/Message-ID as sent", t_submission_headers),
        ("postfix submission: Bcc recipient got a copy, no copy shows Bcc", t_bcc),
        ("postfix smtps (implicit TLS + AUTH): message delivered, headers as sent",
         simple_port(PORT_SMTPS, "tls", True, "ESMTPSA", "TLSv1.")),
        ("postfix plain port (no TLS, no AUTH, local relay): message delivered, headers as sent",
         simple_port(PORT_PLAIN, "none", False, "ESMTP", None)),
        ("postfix AUTH LOGIN-only listener: message delivered", t_login_only),
        ("postfix submission refuses to relay without AUTH (69)", t_submission_needs_auth),
        ("utf-8 subject, display names and body round-trip", t_utf8),
        ("body: dot lines, From lines, no trailing newline (one LF added) arrive exact",
         body_check(["--body", EDGE_BODY], b"", EDGE_BODY + "\n", "edge")),
        ("body: 10,000-character line arrives exact", body_check(["--body-file", "-"], LONG_BODY.encode(),
                                                               LONG_BODY, "long")),
        ("body: LF input from stdin arrives exact", body_check([], BODY_LINES_LF, BODY_LINES_LF.decode(), "lf")),
        ("body: CRLF input (--body-file) arrives as the same lines",
         body_check(["--body-file", str(FILES / "body-crlf.txt")], b"", BODY_LINES_LF.decode(), "crlf")),
        ("body: text ending in a newline gets no second one",
         body_check(["--body", "ends with newline\n"], b"", "ends with newline\n", "newline")),
        ("attachments: message with text, HTML, 5 MB binary and non-ASCII file delivered", t_attachments),
        ("attachment: 5 MB random binary decodes to the same SHA-256", t_attach_big),
        ("attachment: non-ASCII filename and content round-trip", t_attach_intl),
        ("html: text and HTML alternative parts both present", t_alternative),
        ("-v transcript redacts AUTH PLAIN and AUTH LOGIN credentials", t_verbose_redacts),
        ("postfix + dovecot oauth2: XOAUTH2 with a token from a token command, delivered",
         oauth_send("xoauth2", "XOAUTH2")),
        ("postfix + dovecot oauth2: OAUTHBEARER with a token from a token command, delivered",
         oauth_send("oauthbearer", "OAUTHBEARER")),
        ("postfix + dovecot oauth2: --auth auto picks OAUTHBEARER when a token command is set",
         oauth_send("auto", "OAUTHBEARER")),
        ("postfix + dovecot oauth2: a refused XOAUTH2 token is 77 with Dovecot's decoded error",
         oauth_refused("xoauth2", "XOAUTH2", "status=401")),
        ("postfix + dovecot oauth2: a refused OAUTHBEARER token is 77 with Dovecot's decoded error",
         oauth_refused("oauthbearer", "OAUTHBEARER", "status=invalid_token")),
        ("wire: Bcc address only in RCPT TO, no Bcc header transmitted", t_wire_bcc),
        ("wire: LF input goes out as CRLF, no bare CR or LF", t_wire_lf),
        ("wire: lines starting with '.' are dot-stuffed, '.' alone sent as '..'", t_wire_dots),
        ("wire: body without trailing newline ends with one CRLF before the terminator", t_wire_no_newline),
        ("wire: CRLF input is not doubled and equals LF input", t_wire_crlf),
        ("wire: each of Date/Message-ID/From/To/Subject/MIME-Version sent once", t_wire_headers_crlf),
    ]
    faults = [
        fault("connection refused", "nothing listening", 75, f_refused),
        fault("TCP accepted, no greeting (--timeout 2s)", "scripted", 75, f_silent),
        fault("421 at greeting", "scripted", 75, f_greet421),
        fault("STARTTLS not offered (AUTH offered in clear)", "scripted", 76, f_no_starttls),
        fault("STARTTLS not offered (Postfix plain port)", "Postfix plain port", 76, f_no_starttls_postfix),
        fault("certificate from an untrusted CA (leaf only sent)", "scripted (STARTTLS)", 77,
              tls_fault("rogue", ["unable to get local issuer certificate"], chain=False)),
        fault("certificate from an untrusted CA (chain with its root sent)", "scripted (STARTTLS)", 77,
              tls_fault("rogue", ["self-signed certificate in certificate chain"])),
        fault("certificate from a CA not in the trust store (no --ca-file)", "Postfix submission", 77,
              f_untrusted_postfix),
        fault("certificate for the wrong host name", "scripted (STARTTLS)", 77,
              tls_fault("wronghost", ["hostname mismatch"])),
        fault("expired certificate", "scripted (STARTTLS)", 77, tls_fault("expired", ["expired"])),
        fault("expired certificate, implicit TLS", "scripted (TLS)", 77,
              tls_fault("expired", ["expired"], implicit=True)),
        fault("535 on AUTH (wrong password)", "Postfix submission", 77, f_auth535),
        fault("550 on one of three recipients", "Postfix submission", 65, f_rcpt550),
        fault("451 on RCPT", "Postfix submission", 75, f_rcpt451),
        fault("554 after DATA", "Postfix submission (end-of-data restriction)", 69, f_data554),
        fault("452 too many recipients (limit 2, 3 sent)", "Postfix, smtpd_recipient_limit=2", 75, f_too_many),
        fault("connection dropped during DATA", "scripted", 75, f_drop_data),
        fault("message over advertised SIZE", "Postfix, message_size_limit=100000", 69, f_size_postfix),
        fault("552 after DATA (no SIZE advertised)", "scripted (STARTTLS)", 69, f_size_552),
        fault("credentials with --tls none (scripted server)", "scripted (never contacted)", 78, f_creds_plain),
        fault("credentials with --tls none (Postfix plain port)", "Postfix plain port (never contacted)", 78,
              f_creds_plain_postfix),
    ]
    for name, fn in checks + faults:
        run_check(name, fn)

    passed = sum(1 for _, ok in RESULTS if ok)
    failed = len(RESULTS) - passed
    if ENV.get("INTEROP_MATRIX"):
        write_matrix(Path(ENV["INTEROP_MATRIX"]))
    if ENV.get("INTEROP_COUNTS"):
        Path(ENV["INTEROP_COUNTS"]).write_text(f"{passed} {failed}\n")
    if "cte" in STATE:
        print("# transfer encodings chosen by mailsend: "
              + ", ".join(f"{k}={v or '-'}" for k, v in STATE["cte"].items()), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
