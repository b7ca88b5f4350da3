#!/usr/bin/python3
"""signing.py: mailsend interop checks for DKIM signing and inline images (issue 12):
messages signed by mailsend go through the private Postfix (submission,
STARTTLS + AUTH) and the copy Postfix delivered into the Maildir must
still verify with dkimpy (Debian's python3-dkim, an implementation
independent of mailsend's), the public key served to it through its
`dnsfunc` hook (no DNS):

- text, HTML + text, attachments: RSA-SHA256 (PKCS#1 key) and
  Ed25519-SHA256 (PKCS#8 key);
- 8-bit input in sendmail mode (LF line endings, UTF-8 body);
- a campaign message (`mailsend bulk`) with List-Unsubscribe,
  List-Unsubscribe-Post and List-Id, all of them under the signature;
- a tampered copy fails (the check can fail);
- inline images: the tree Python's email parser reads (multipart/related
  inside multipart/alternative, Content-ID <logo.png>, the image's bytes).

Started by run.sh with /usr/bin/python3 (where Debian's dkim module is),
after the other scripts, with the same INTEROP_* variables. Prints
`ok - name` / `not ok - name: details` per check and writes the counts to
$INTEROP_COUNTS.
"""

from __future__ import annotations

import base64
import email
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from suite import (  # noqa: E402
    CA, ENV, MAILDIR, POLICY, PORT_SUB, RESULTS, RUNDIR, WORK, Check,
    creds, mailsend, postfix, run_check, short,
)

try:
    import dkim  # Debian's python3-dkim
except ImportError:  # every DKIM check then fails, saying why
    dkim = None

KEYS = WORK / "dkim"
DOMAIN = "example.test"
STATE: dict = {}


# ---------------------------------------------------------------- keys

def make_keys() -> dict[str, tuple[Path, str]]:
    """selector -> (private key file, DNS TXT record)."""
    KEYS.mkdir(parents=True, exist_ok=True)
    rsa = KEYS / "rsa.pem"
    ed = KEYS / "ed.pem"
    # PKCS#1 for RSA (`BEGIN RSA PRIVATE KEY`), PKCS#8 for Ed25519.
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(rsa), "2048"],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(ed)],
                   check=True, capture_output=True)
    for f in (rsa, ed):
        f.chmod(0o600)
    rsa_der = subprocess.run(["openssl", "pkey", "-in", str(rsa), "-pubout", "-outform", "DER"],
                             check=True, capture_output=True).stdout
    ed_der = subprocess.run(["openssl", "pkey", "-in", str(ed), "-pubout", "-outform", "DER"],
                            check=True, capture_output=True).stdout
    return {
        "rsa2026": (rsa, f"v=DKIM1; k=rsa; p={base64.b64encode(rsa_der).decode()}"),
        # The record holds the raw 32-byte key (RFC 8463), the end of the DER form.
        "ed2026": (ed, f"v=DKIM1; k=ed25519; p={base64.b64encode(ed_der[-32:]).decode()}"),
    }


KEYS_BY_SELECTOR: dict[str, tuple[Path, str]] = {}


def dnsfunc(name, timeout=5):
    """dkimpy's DNS hook: the TXT record of SELECTOR._domainkey.example.test."""
    if isinstance(name, bytes):
        name = name.decode()
    name = name.rstrip(".")
    for selector, (_, record) in KEYS_BY_SELECTOR.items():
        if name == f"{selector}._domainkey.{DOMAIN}":
            return record.encode()
    return None


def verifies(raw: bytes) -> tuple[bool, str]:
    """dkimpy's verdict on a delivered copy, and why not."""
    if dkim is None:
        return False, "python3-dkim is not installed"
    try:
        return bool(dkim.DKIM(raw).verify(dnsfunc=dnsfunc)), "dkimpy says it does not verify"
    except Exception as e:  # dkimpy raises on a malformed signature
        return False, f"dkimpy: {type(e).__name__}: {e}"


def signature_tags(raw: bytes) -> dict[str, str]:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    value = msg.get("DKIM-Signature", "")
    value = re.sub(r"\s+", "", str(value))
    return dict(t.split("=", 1) for t in value.split(";") if "=" in t)


# ---------------------------------------------------------------- Maildir

_raw: dict[str, bytes] = {}


def copy_of(message_id: str, timeout: float = 15.0) -> Optional[bytes]:
    """The raw bytes of the delivered copy with this Message-ID."""
    deadline = time.monotonic() + timeout
    want = message_id.strip().encode()
    while True:
        for sub in ("new", "cur"):
            d = MAILDIR / sub
            if not d.is_dir():
                continue
            for f in d.iterdir():
                if f.name not in _raw:
                    _raw[f.name] = f.read_bytes()
        for raw in _raw.values():
            m = re.search(rb"^Message-ID:[ \t]*(\S+)", raw, re.M | re.I)
            if m and m.group(1) == want:
                return raw
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def dkim_args(selector: str) -> list[str]:
    return ["--dkim-key", str(KEYS_BY_SELECTOR[selector][0]), "--dkim-selector", selector]


def check_delivered(c: Check, message_id: str, selector: str, must_sign: list[str]) -> Optional[bytes]:
    raw = copy_of(message_id)
    if not c.expect(raw is not None, f"no copy of {message_id} in the Maildir"):
        return None
    tags = signature_tags(raw)
    c.equal(tags.get("s"), selector, "s=")
    c.equal(tags.get("d"), DOMAIN, "d=")
    c.equal(tags.get("c"), "relaxed/relaxed", "c=")
    signed = tags.get("h", "").lower().split(":")
    for name in must_sign:
        c.expect(name in signed, f"{name} not in h= {short(tags.get('h'))}")
    c.expect(signed.count("from") == 2, f"From is not over-signed: h={short(tags.get('h'))}")
    ok, why = verifies(raw)
    c.expect(ok, f"the delivered copy does not verify: {why}")
    return raw


def send_signed(c: Check, selector: str, extra: list[str]) -> None:
    run = mailsend(postfix(PORT_SUB) + dkim_args(selector) + [
        "--from", f"Signer <signer@{DOMAIN}>", "--to", "dkim-rcpt@example.test",
        "--json", *extra], env=creds())
    if not c.equal(run.code, 0, f"exit code ({run.describe()})"):
        return
    j = run.json or {}
    check_delivered(c, j.get("message_id", ""), selector,
                    ["from", "to", "subject", "date", "message-id", "mime-version", "content-type"])


# ---------------------------------------------------------------- checks

def files() -> dict[str, Path]:
    d = WORK / "dkim-files"
    d.mkdir(parents=True, exist_ok=True)
    (d / "page.html").write_text("<p>Hello   <b>signed</b> world</p>\n<img src=\"cid:logo.png\">\n",
                                 encoding="utf-8")
    (d / "report.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    (d / "blob.bin").write_bytes(bytes(range(256)) * 400)
    # A tiny valid PNG (1x1).
    (d / "logo.png").write_bytes(base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="))
    return {p.name: p for p in d.iterdir()}


def t_text(c: Check, selector: str) -> None:
    send_signed(c, selector, ["--subject", f"DKIM text {selector}, Grüße",
                              "--body", "plain  text\twith   spaces  \n\n\n"])


def t_html_attachments(c: Check, selector: str) -> None:
    f = STATE["files"]
    send_signed(c, selector, ["--subject", f"DKIM html + attachments {selector}",
                              "--body", "text part\n", "--html", str(f["page.html"]),
                              "--attach", str(f["report.csv"]), "--attach", str(f["blob.bin"]),
                              "--cc", "dkim-cc@example.test", "--reply-to", f"reply@{DOMAIN}"])


def t_sendmail_8bit(c: Check) -> None:
    mid = f"<dkim-sendmail-{os.getpid()}@{DOMAIN}>"
    message = (f"From: Jörg <joerg@{DOMAIN}>\nTo: dkim-rcpt@example.test\n"
               f"Subject: 8-bit sendmail input\nMessage-ID: {mid}\n"
               "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
               "Content-Transfer-Encoding: 8bit\n\nGrüße ☕, trailing spaces   \n\nline\n").encode()
    env = {"MAILSEND_HOST": "localhost", "MAILSEND_PORT": str(PORT_SUB), "MAILSEND_TLS": "starttls",
           "MAILSEND_CA_FILE": CA, "MAILSEND_TIMEOUT": "10s", "MAILSEND_FROM": f"joerg@{DOMAIN}",
           "MAILSEND_DKIM_KEY": str(KEYS_BY_SELECTOR["ed2026"][0]),
           "MAILSEND_DKIM_SELECTOR": "ed2026", **creds()}
    run = mailsend(["sendmail", "-i", "dkim-rcpt@example.test"], env=env, stdin=message)
    if not c.equal(run.code, 0, f"exit code ({run.describe()})"):
        return
    raw = check_delivered(c, mid, "ed2026", ["from", "to", "subject", "content-type"])
    if raw is not None:
        c.expect("Grüße ☕".encode() in raw, "the 8-bit body did not arrive as sent")


def t_campaign(c: Check) -> None:
    d = WORK / "dkim-campaign"
    d.mkdir(parents=True, exist_ok=True)
    (d / "list.csv").write_text("email,name\ndkim-bulk-1@example.test,One\ndkim-bulk-2@example.test,Two\n",
                                encoding="utf-8")
    args = ["bulk", "--data", str(d / "list.csv"), "--yes", "--json",
            "--subject", "Signed news for {{ name }}", "--body", "Dear {{ name }}\n",
            "--unsubscribe-url", "https://unsubscribe.example.test/u?e={{ email | urlencode }}",
            "--unsubscribe-mailto", f"unsub@{DOMAIN}", "--list-id", f"News <news.{DOMAIN}>",
            "--from", f"News <news@{DOMAIN}>", *postfix(PORT_SUB), *dkim_args("rsa2026")]
    env = {**creds(), "HOME": str(d)}
    run = mailsend(args, env=env)
    if not c.equal(run.code, 0, f"exit code ({run.describe()})"):
        return
    rows = [json.loads(l) for l in run.stdout.splitlines() if l.startswith("{")]
    ids = [r["message_id"] for r in rows if r.get("status") == "sent"]
    c.equal(len(ids), 2, "messages sent")
    for mid in ids:
        raw = check_delivered(c, mid, "rsa2026",
                              ["from", "to", "subject", "list-unsubscribe", "list-unsubscribe-post", "list-id"])
        if raw is not None:
            STATE.setdefault("campaign", raw)


def t_tampered(c: Check) -> None:
    raw = STATE.get("campaign")
    if not c.expect(raw is not None, "no campaign copy to tamper with"):
        return
    c.expect(verifies(raw)[0], "the untouched copy does not verify")
    c.expect(not verifies(raw.replace(b"Dear ", b"Dean ", 1))[0], "a changed body still verifies")
    c.expect(not verifies(raw.replace(b"List-Unsubscribe-Post:", b"X-Was-Post:", 1))[0],
             "a removed List-Unsubscribe-Post still verifies")


def t_wire_edges(c: Check) -> None:
    """Review M: a text file with bare CRs (the DATA writer makes them CRLF), a List-* field
    whose name cannot be in h= (left unsigned), and many Cc addresses' worth of signed fields."""
    d = WORK / "dkim-files"
    text = d / "bare-cr.txt"
    text.write_bytes(b"one\rtwo  \r\nthree\t\r\r\n\r")
    send_signed(c, "rsa2026", ["--subject", "DKIM bare CR", "--body-file", str(text),
                               "--header", "List-X;y: 1", "--header", f"List-Id: <edge.{DOMAIN}>"])


def t_inline(c: Check) -> None:
    f = STATE["files"]
    run = mailsend(postfix(PORT_SUB) + dkim_args("ed2026") + [
        "--from", f"Signer <signer@{DOMAIN}>", "--to", "dkim-rcpt@example.test",
        "--subject", "inline logo", "--body", "see the logo\n", "--html", str(f["page.html"]),
        "--inline", str(f["logo.png"]), "--attach", str(f["report.csv"]), "--json"], env=creds())
    if not c.equal(run.code, 0, f"exit code ({run.describe()})"):
        return
    raw = check_delivered(c, (run.json or {}).get("message_id", ""), "ed2026", ["content-type"])
    if raw is None:
        return
    msg = email.message_from_bytes(raw, policy=POLICY)
    tree = [(p.get_content_type(), str(p.get("Content-ID", "")).strip()) for p in msg.walk()]
    c.equal([t for t, _ in tree], ["multipart/mixed", "multipart/alternative", "text/plain",
                                   "multipart/related", "text/html", "image/png", "text/csv"],
            "MIME tree")
    logo = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    if c.expect(len(logo) == 1, "one image part"):
        c.equal(str(logo[0].get("Content-ID", "")).strip(), "<logo.png>", "Content-ID")
        c.equal(logo[0].get_content_disposition(), "inline", "Content-Disposition")
        c.equal(logo[0].get_filename(), "logo.png", "filename")
        c.equal(logo[0].get_payload(decode=True), f["logo.png"].read_bytes(), "image bytes")


def main() -> int:
    RUNDIR.mkdir(parents=True, exist_ok=True)
    try:
        KEYS_BY_SELECTOR.update(make_keys())
    except Exception as e:  # every check then fails
        print(f"# cannot make DKIM keys: {e}")
    STATE["files"] = files()
    checks = [
        ("dkim: RSA-SHA256 (PKCS#1 key), text: Postfix's delivered copy verifies with dkimpy",
         lambda c: t_text(c, "rsa2026")),
        ("dkim: Ed25519-SHA256 (PKCS#8 key), text: Postfix's delivered copy verifies with dkimpy",
         lambda c: t_text(c, "ed2026")),
        ("dkim: RSA, text + HTML + attachments, Cc, Reply-To: the delivered copy verifies with dkimpy",
         lambda c: t_html_attachments(c, "rsa2026")),
        ("dkim: Ed25519, text + HTML + attachments: the delivered copy verifies with dkimpy",
         lambda c: t_html_attachments(c, "ed2026")),
        ("dkim: sendmail mode, 8-bit UTF-8 input with LF endings, key from MAILSEND_DKIM_*: verifies",
         t_sendmail_8bit),
        ("dkim: campaign messages (List-Unsubscribe, List-Unsubscribe-Post, List-Id signed) verify",
         t_campaign),
        ("dkim: a tampered copy (body, or a List-* header removed) fails dkimpy", t_tampered),
        ("dkim: bare CRs in the text, a List-* name with ';': the delivered copy verifies",
         t_wire_edges),
        ("inline: --inline logo.png: mixed > alternative > [text, related > [html, image]], "
         "Content-ID <logo.png>, signed", t_inline),
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
