#!/usr/bin/env python3
"""mailsend interop checks with real system programs and paths: the outbox
against Postfix, git send-email, mailsend with HOME unset reading
/etc/mailsend/config.toml, and Debian's cron mailing a job's output through
mailsend as /usr/sbin/sendmail.

Started by run.sh after suite.py, with the same INTEROP_* variables plus
INTEROP_SYSTEM (the directory system.sh prepared), INTEROP_SYSTEM_SH and
INTEROP_CRON_TOKEN. run.sh started cron before suite.py; the cron check
comes last, so that the wait for cron's next full minute overlaps the rest.
The /etc/mailsend/config.toml at mode 644 comes after it: in system.sh's
divert mode that file is the one cron's mailer reads.

Prints `ok - name` / `not ok - name: details` per check and writes the
counts to $INTEROP_COUNTS.
"""

from __future__ import annotations

import email
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from suite import (  # noqa: E402
    BIN, CA, ENV, MAILDIR, PASSWORD, POLICY, PORT_SUB, RESULTS, WORK, Check, Run, addresses,
    delivered, no_secret, run_check, short,
)
from smtpfault import free_port  # noqa: E402

SYS = Path(ENV["INTEROP_SYSTEM"])
SYSTEM_SH = ENV["INTEROP_SYSTEM_SH"]
TOKEN = ENV["INTEROP_CRON_TOKEN"]
PASSWORD_FILE = ENV["INTEROP_PASSWORD_FILE"]


def status() -> dict[str, str]:
    try:
        lines = (SYS / "status").read_text().splitlines()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in lines if "=" in line)


def clean_env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("MAILSEND_", "INTEROP_"))}
    e.update(extra)
    return e


def run(cmd: list[str], env: dict, cwd, stdin: bytes = b"", timeout: float = 60) -> Run:
    started = time.time()
    t0 = time.monotonic()
    p = subprocess.run(cmd, input=stdin, cwd=cwd, env=env, capture_output=True, timeout=timeout)
    return Run(cmd, p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"),
               time.monotonic() - t0, started, time.time())


def raw_messages() -> list[tuple[Path, bytes]]:
    out = []
    for sub in ("new", "cur"):
        d = MAILDIR / sub
        if d.is_dir():
            out += [(f, f.read_bytes()) for f in sorted(d.iterdir())]
    return out


def raw_body(raw: bytes) -> bytes:
    return raw.split(b"\n\n", 1)[1] if b"\n\n" in raw else b""


def decoded_body(raw: bytes) -> bytes:
    """The body as bytes: as stored for 7bit/8bit, else transfer-decoded."""
    msg = email.message_from_bytes(raw, policy=POLICY)
    cte = str(msg.get("Content-Transfer-Encoding", "7bit")).strip().lower()
    if cte in ("7bit", "8bit", "binary"):
        return raw_body(raw)
    return msg.get_payload(decode=True)


def copies_of(message_id: str, count: int, timeout: float = 10.0) -> list[tuple[Path, bytes]]:
    """Raw copies carrying `message_id`; waits for `count`, then 0.5 s for extra ones."""
    delivered(message_id, count, timeout=timeout)
    time.sleep(0.5)
    out = []
    for path, raw in raw_messages():
        msg = email.message_from_bytes(raw, policy=POLICY)
        if str(msg.get("Message-ID", "")).strip() == message_id:
            out.append((path, raw))
    return out


def mailer_log() -> str:
    """The log file of the /etc/mailsend account (cron's mailer and the HOME-unset checks)."""
    try:
        return (SYS / "mailsend.log").read_text()
    except OSError:
        return ""


def log_tail() -> str:
    return short(mailer_log().strip()[-600:] or "(no mailsend log)", 700)


# ---------------------------------------------------------------- outbox

OUTBOX = WORK / "outbox"


def outbox_env(**extra: str) -> dict:
    return clean_env(HOME=str(OUTBOX), MAILSEND_CONFIG=str(OUTBOX / "config.toml"), **extra)


def o_queue(c: Check) -> None:
    OUTBOX.mkdir(parents=True, exist_ok=True)
    closed = free_port()  # nothing listens there: connection refused, a temporary failure
    cfg = OUTBOX / "config.toml"
    cfg.write_text(
        "[accounts.box]\n"
        "default = true\n"
        'host = "127.0.0.1"\n'
        f"port = {closed}\n"
        'tls = "starttls"\n'
        'user = "sender@example.test"\n'
        f'password_command = "cat {PASSWORD_FILE}"\n'
        'from = "Outbox Sender <outbox-sender@example.test>"\n'
        f'ca_file = "{CA}"\n'
        'timeout = "10s"\n'
        f'outbox = "{OUTBOX / "box"}"\n')
    cfg.chmod(0o600)
    r = run([BIN, "--queue", "--to", "outbox@example.test", "--subject", "kept in the outbox",
             "--body", "queued while the server was away\n", "--json"], outbox_env(), OUTBOX)
    no_secret(c, r, PASSWORD)
    c.equal(r.code, 0, f"exit code ({r.describe()})")
    m = re.search(r"^mailsend: queued as (\S+): (.*)$", r.stderr, re.M)
    if not c.expect(m, f"no 'mailsend: queued as ID: reason' line on stderr: {short(r.stderr)}"):
        return
    qid = m.group(1)
    c.expect("refused" in m.group(2).lower() and str(closed) in m.group(2),
             f"the reason does not say the connection to port {closed} was refused: {m.group(2)!r}")
    j = r.json or {}
    c.equal(j.get("queued"), qid, "JSON queued")
    c.expect(re.fullmatch(r"<[^<>@\s]+@example\.test>", str(j.get("message_id"))),
             f"JSON message_id {short(j.get('message_id'))}")
    lst = run([BIN, "outbox", "list"], outbox_env(), OUTBOX)
    c.equal(lst.code, 0, f"outbox list exit code ({lst.describe()})")
    c.expect(re.search(rf"^{re.escape(qid)}\s+queued\b", lst.stdout, re.M),
             f"outbox list does not show {qid} queued: {short(lst.stdout)}")
    time.sleep(0.3)
    c.equal(len(copies_of(j.get("message_id", "-"), 0, timeout=0)), 0, "copies delivered before the flush")
    STATE["outbox"] = (qid, j.get("message_id"))


def o_flush(c: Check) -> None:
    if not c.expect("outbox" in STATE, "nothing was queued"):
        return
    qid, mid = STATE["outbox"]
    # The account still names the closed port: the environment overrides it.
    r = run([BIN, "outbox", "flush", "-v"], outbox_env(MAILSEND_PORT=str(PORT_SUB)), OUTBOX)
    no_secret(c, r, PASSWORD)
    c.equal(r.code, 0, f"flush exit code ({r.describe()})")
    c.expect(re.search(rf"^mailsend: {re.escape(qid)} delivered \(250 ", r.stderr, re.M),
             f"flush -v does not report {qid} delivered: {short(r.stderr[-300:])}")
    copies = copies_of(mid, 1)
    if c.equal(len(copies), 1, "copies delivered"):
        msg = email.message_from_bytes(copies[0][1], policy=POLICY)
        c.equal(str(msg["Message-ID"]).strip(), mid, "Message-ID")
        c.equal(addresses(msg, "From"), [("Outbox Sender", "outbox-sender@example.test")], "From")
        c.equal(str(msg["Subject"]), "kept in the outbox", "Subject")
        c.equal(raw_body(copies[0][1]), b"queued while the server was away\n", "body")
        c.expect("with ESMTPSA" in str(msg["Received"]), f"Received: {short(str(msg['Received']))}")
    lst = run([BIN, "outbox", "list"], outbox_env(), OUTBOX)
    c.expect(lst.code == 0 and lst.stdout.strip() == "",
             f"outbox list after the flush: exit {lst.code}, {short(lst.stdout)}")
    entries = sorted(p.name for p in (OUTBOX / "box").iterdir() if not p.name.startswith("."))
    c.equal(entries, ["failed"], "outbox directory entries")
    c.equal(sorted(p.name for p in (OUTBOX / "box" / "failed").iterdir()), [], "entries in failed/")
    again = run([BIN, "outbox", "flush", "-v"], outbox_env(MAILSEND_PORT=str(PORT_SUB)), OUTBOX)
    c.equal(again.code, 0, f"second flush exit code ({again.describe()})")
    c.equal(len(copies_of(mid, 2, timeout=1)), 1, "copies after a second flush")


# ---------------------------------------------------------------- git send-email

GIT = WORK / "git"
COMMIT_MESSAGE = (
    "interop: a patch through mailsend\n"
    "\n"
    "A commit message with lines a mail path likes to break:\n"
    ".\n"
    ".leading dot\n"
    "From the start of a line\n"
    "Grüße aus Köln ✓\n"
)
PATCHED_TEXT = (
    "line one\n"
    "trailing blanks   \n"
    "\ttab at the start\n"
    ".\n"
    "..two dots\n"
    "From here\n"
    "Unicode: 日本語 🎉\n"
    + "x" * 900 + "\n"
)


def git_env() -> dict:
    home = GIT / "home"
    home.mkdir(parents=True, exist_ok=True)
    return clean_env(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", LC_ALL="C.UTF-8",
                     GIT_AUTHOR_NAME="Dev", GIT_AUTHOR_EMAIL="dev@example.test",
                     GIT_COMMITTER_NAME="Dev", GIT_COMMITTER_EMAIL="dev@example.test",
                     MAILSEND_CONFIG=str(GIT / "config.toml"))


def t_git(c: Check) -> None:
    repo = GIT / "repo"
    repo.mkdir(parents=True, exist_ok=True)
    env = git_env()

    def git(*args: str, stdin: bytes = b"") -> Run:
        r = run(["git", *args], env, repo, stdin=stdin)
        if r.code != 0:
            raise RuntimeError(f"git {' '.join(args[:2])}: {r.describe()} {short(r.stdout)}")
        return r

    git("init", "-q", "-b", "main", ".")
    (repo / "file.txt").write_text("line one\n", encoding="utf-8")
    git("add", "file.txt")
    git("commit", "-q", "--no-gpg-sign", "-m", "initial")
    (repo / "file.txt").write_text(PATCHED_TEXT, encoding="utf-8")
    git("commit", "-q", "--no-gpg-sign", "-a", "--cleanup=verbatim", "-F", "-", stdin=COMMIT_MESSAGE.encode())
    out = git("format-patch", "-1", "-o", str(GIT / "out")).stdout.strip()
    patch = Path(out if os.path.isabs(out) else repo / out)
    (GIT / "config.toml").write_text(
        "[accounts.patches]\n"
        "default = true\n"
        'host = "localhost"\n'
        f"port = {PORT_SUB}\n"
        'user = "sender@example.test"\n'
        f'password_command = "cat {PASSWORD_FILE}"\n'
        'from = "Patch Robot <robot@example.test>"\n'
        f'ca_file = "{CA}"\n'
        'timeout = "10s"\n')
    (GIT / "config.toml").chmod(0o600)
    version = run(["git", "--version"], env, repo).stdout.strip()
    r = run(["git", "send-email", f"--sendmail-cmd={BIN} sendmail", "--from", "Dev <dev@example.test>",
             "--to", "list@example.test", "--envelope-sender=dev@example.test", "--confirm=never",
             "--no-chain-reply-to", "--suppress-cc=all", "--8bit-encoding=UTF-8", str(patch)], env, repo)
    no_secret(c, r, PASSWORD)
    if not c.equal(r.code, 0, f"git send-email exit code ({version}; {r.describe()}; stdout {short(r.stdout, 400)})"):
        return
    m = re.search(r"^Message-I[Dd]: (<[^>\s]+>)$", r.stdout, re.M)
    if not c.expect(m, f"git send-email printed no Message-ID: {short(r.stdout, 400)}"):
        return
    mid = m.group(1)
    sendmail_line = re.search(r"^Sendmail: (.*)$", r.stdout, re.M)
    c.expect(sendmail_line and " -f dev@example.test" in sendmail_line.group(1),
             f"git did not call mailsend with -f: {sendmail_line and sendmail_line.group(1)!r}")
    copies = copies_of(mid, 1)
    if not c.equal(len(copies), 1, f"copies with git's Message-ID {mid}"):
        return
    raw = copies[0][1]
    msg = email.message_from_bytes(raw, policy=POLICY)
    c.equal(len(msg.get_all("Message-ID") or []), 1, "number of Message-ID headers")
    c.equal(str(msg["Subject"]), "[PATCH] interop: a patch through mailsend", "Subject")
    c.equal(addresses(msg, "From"), [("Dev", "dev@example.test")], "From")
    c.equal(str(msg["Return-Path"]).strip(), "<dev@example.test>", "Return-Path (envelope sender from -f)")
    c.equal(str(msg["Delivered-To"]).strip(), "list@example.test", "Delivered-To")
    date = re.search(r"^Date: (.*)$", r.stdout, re.M)
    c.equal(str(msg["Date"]), date and date.group(1), "Date (as git set it)")
    c.expect(str(msg.get("X-Mailer", "")).startswith("git-send-email"), f"X-Mailer {msg.get('X-Mailer')!r}")
    want = raw_body(patch.read_bytes())
    got = decoded_body(raw)
    if got != want:
        i = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]), min(len(got), len(want)))
        c.problems.append(f"patch body differs from the format-patch file at byte {i} "
                          f"(got {len(got)} bytes, want {len(want)}): got {got[max(0, i - 30):i + 30]!r}, "
                          f"want {want[max(0, i - 30):i + 30]!r}")
    c.expect(PATCHED_TEXT.split("\n")[6].encode() in want, "the patch file lacks the UTF-8 line (harness)")


# ---------------------------------------------------------------- HOME unset, /etc/mailsend

def in_system(perm: str, args: list[str]) -> Run:
    """mailsend as cron's mailer sees the world: env -i, no HOME, cwd /, and
    /etc/mailsend/config.toml from system.sh at mode `perm`."""
    return run([SYSTEM_SH, "exec", str(SYS), perm, "--", "env", "-i", "PATH=/usr/bin:/bin", BIN, *args],
               os.environ.copy(), "/")


def system_ready(c: Check) -> bool:
    s = status()
    return c.expect("mode" in s, f"system.sh did not prepare the system paths ({SYS / 'status'} missing)")


def t_home_unset(c: Check) -> None:
    if not system_ready(c):
        return
    r = in_system("600", ["--to", "home-unset@example.test", "--subject", "HOME unset", "--body", "t", "--json"])
    no_secret(c, r, PASSWORD)
    c.equal(r.code, 0, f"exit code ({r.describe()}; {status().get('mode')} mode)")
    j = r.json
    if not c.expect(j is not None, f"no JSON on stdout: {short(r.stdout)}"):
        return
    c.equal(j.get("accepted"), ["home-unset@example.test"], "JSON accepted")
    c.equal(j.get("from"), "cron@example.test", "JSON from (the /etc/mailsend account's)")
    copies = copies_of(j.get("message_id", "-"), 1)
    if c.equal(len(copies), 1, "copies delivered"):
        msg = email.message_from_bytes(copies[0][1], policy=POLICY)
        c.equal(addresses(msg, "From"), [("Cron", "cron@example.test")], "From")
        c.equal(raw_body(copies[0][1]), b"t\n", "body")
    c.expect(re.search(rf"account=system .*message_id=\"{re.escape(j.get('message_id', '-'))}\" result=sent",
                       mailer_log()),
             f"the account's log file has no line for the message: {log_tail()}")


def t_syslog(c: Check) -> None:
    """--log syslog: one line per message to /dev/log, facility mail."""
    import socket
    dev_log = Path("/dev/log")
    if dev_log.exists():
        # A system logger owns it here: nothing to intercept without taking
        # it over, so say so instead of passing.
        c.expect(False, "/dev/log belongs to this machine's logger; cannot check --log syslog here")
        return
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(dev_log))
    listener.settimeout(10)
    try:
        env = clean_env(MAILSEND_CONFIG="/dev/null", MAILSEND_PASSWORD=PASSWORD, HOME=str(WORK))
        r = run([BIN, "--host", "127.0.0.1", "--port", str(PORT_SUB), "--ca-file", str(CA),
                 "--user", "sender@example.test", "--to", "syslog@example.test", "--body", "s",
                 "--log", "syslog", "--json"], env, WORK)
        no_secret(c, r, PASSWORD)
        c.equal(r.code, 0, f"exit code ({r.describe()})")
        try:
            line = listener.recv(8192).decode("utf-8", "replace")
        except OSError as e:
            c.expect(False, f"nothing arrived on /dev/log: {e}")
            return
        c.expect(line.startswith("<22>"), f"priority mail.info (<22>): {short(line)}")
        c.expect(re.search(r"mailsend\[\d+\]: account=- from=sender@example.test to=syslog@example.test .*"
                           r"result=sent reply=\"250 ", line), f"syslog line: {short(line, 400)}")
        c.expect(PASSWORD not in line, "password in the syslog line")
    finally:
        listener.close()
        dev_log.unlink(missing_ok=True)


def t_etc_644(c: Check) -> None:
    if not system_ready(c):
        return
    r = in_system("644", ["--to", "home-unset@example.test", "--subject", "never sent", "--body", "t"])
    no_secret(c, r, PASSWORD)
    c.equal(r.code, 78, f"exit code ({r.describe()})")
    c.expect("/etc/mailsend/config.toml" in r.stderr, f"stderr does not name /etc/mailsend/config.toml: {short(r.stderr)}")
    c.expect("chmod 600 /etc/mailsend/config.toml" in r.stderr, f"stderr lacks 'chmod 600 /etc/mailsend/config.toml': {short(r.stderr)}")


# ---------------------------------------------------------------- cron

def t_cron(c: Check) -> None:
    if not system_ready(c):
        return
    s = status()
    cron = s.get("cron", "(no cron status)")
    if not c.expect(cron.startswith(("running", "system daemon")), f"cron not running: {cron}"):
        return
    # The job runs at the first full minute after cron started; then the mail.
    deadline = int(s.get("cron_started", time.time())) + 85
    needle = f"cron-output-{TOKEN}".encode()
    found: list[bytes] = []
    while not found and time.time() < deadline:
        found = [raw for _, raw in raw_messages() if needle in raw_body(raw)]
        if not found:
            time.sleep(0.5)
    if not found:
        try:
            cron_log = (SYS / "cron.log").read_text()[-300:]
        except OSError:
            cron_log = "(none)"
        c.problems.append(f"no mail with {needle.decode()} within 85 s of cron's start ({s.get('mode')} mode, "
                          f"{cron}); mailsend log: {log_tail()}; cron output: {short(cron_log)}")
        return
    STATE["cron"] = found
    msgs = sorted((email.message_from_bytes(raw, policy=POLICY) for raw in found),
                  key=lambda m: m["Date"].datetime.timestamp() if m["Date"] and m["Date"].datetime else 0)
    msg = msgs[0]
    c.equal(str(msg["Delivered-To"]).strip(), "cron-target@example.test", "Delivered-To (root via [aliases])")
    c.equal(addresses(msg, "From"), [("Cron Daemon", "cron@example.test")], "From")
    c.equal(len(msg.get_all("From") or []), 1, "number of From headers")
    c.equal(str(msg["Return-Path"]).strip(), "<cron@example.test>", "Return-Path")
    date = msg["Date"]
    if c.expect(date is not None and date.datetime is not None, f"Date {short(str(date))} missing or unparsable"):
        c.expect(int(s.get("cron_started", 0)) - 2 <= date.datetime.timestamp() <= time.time() + 2,
                 f"Date {date} is not the time cron ran the job")
    c.expect(re.fullmatch(r"<[^<>@\s]+@example\.test>", str(msg.get("Message-ID", "")).strip()),
             f"Message-ID {short(str(msg.get('Message-ID')))}")
    c.equal(len(msg.get_all("Message-ID") or []), 1, "number of Message-ID headers")
    c.expect(str(msg["Subject"]).startswith("Cron <root@") and f"cron-output-{TOKEN}" in str(msg["Subject"]),
             f"Subject {short(str(msg['Subject']))}")
    env = [str(v) for v in msg.get_all("X-Cron-Env") or []]
    c.expect("<MAILTO=root>" in env and any(v.startswith("<SHELL=") for v in env),
             f"X-Cron-Env headers: {env}")
    c.equal(str(msg.get("MIME-Version", "")), "1.0", "MIME-Version (cron's)")
    c.equal(msg.get_content_type(), "text/plain", "Content-Type (cron's)")
    c.expect("with ESMTPSA" in str(msg["Received"]), f"Received: {short(str(msg['Received']))}")
    # Only cron's: in divert mode the file is system-wide, and other mailsend
    # runs on the machine (a concurrent `cargo test`) may queue theirs here.
    left = [str(m.parent.relative_to(SYS)) for m in (SYS / "outbox").glob("**/meta.json")
            if "cron-target@example.test" in m.read_text(errors="replace")]
    c.equal(left, [], "cron's messages left in the account's outbox")


def t_cron_env(c: Check) -> None:
    msgs = STATE.get("cron")
    if not c.expect(msgs, "cron's mail did not arrive"):
        return
    raw = msgs[0]
    msg = email.message_from_bytes(raw, policy=POLICY)
    # The job saw the crontab's MAILSEND_FROM; the mailer did not (else From would be crontab-var@).
    c.expect(b"job saw MAILSEND_FROM=Crontab Variable <crontab-var@example.test>" in raw_body(raw),
             f"the job's output does not show the crontab variable: {short(raw_body(raw))}")
    c.equal(addresses(msg, "From")[:1], [("Cron Daemon", "cron@example.test")],
            "From (the /etc/mailsend account's address, not the crontab's MAILSEND_FROM)")
    c.expect("account=system from=cron@example.test to=cron-target@example.test" in mailer_log(),
             f"the account's log (from /etc/mailsend/config.toml) has no line for cron's mail: {log_tail()}")


# ---------------------------------------------------------------- main

STATE: dict = {}


def main() -> int:
    checks = [
        ("outbox: --queue while submission is unreachable -> exit 0, 'queued as ID', listed", o_queue),
        ("outbox: flush once submission is back -> delivered once, original Message-ID, outbox empty", o_flush),
        ("git send-email --sendmail-cmd='mailsend sendmail': Subject, From, git's Message-ID and Date kept, "
         "patch body byte-identical", t_git),
        ("HOME unset (env -i, cwd /): /etc/mailsend/config.toml is used, message delivered", t_home_unset),
        ("--log syslog: one line per message on /dev/log, facility mail, no password", t_syslog),
        ("Debian cron MAILTO=root -> mailsend as /usr/sbin/sendmail -> Postfix: From 'Cron Daemon' "
         "<account address>, Date and Message-ID added, X-Cron-Env kept", t_cron),
        ("Debian cron: the mailer runs with cron's own environment, not the crontab's", t_cron_env),
        ("HOME unset: /etc/mailsend/config.toml at mode 644 with a password -> 78, 'chmod 600'", t_etc_644),
    ]
    for name, fn in checks:
        run_check(name, fn)
    passed = sum(1 for _, ok in RESULTS if ok)
    failed = len(RESULTS) - passed
    if ENV.get("INTEROP_COUNTS"):
        Path(ENV["INTEROP_COUNTS"]).write_text(f"{passed} {failed}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
