#!/usr/bin/env python3
"""`mailsend check` against the private Postfix: the report of a good
submission port (STARTTLS + AUTH) and of the implicit-TLS port, a wrong
password (77), a CA not trusted (77, the certificate still described), and
the two port mix-ups with the setting that fits. Postfix's own log proves
that no MAIL command was ever sent.

Started by run.sh after suite.py, with the same INTEROP_* variables; prints
`ok - ...` / `not ok - ...` lines and writes its counts to $INTEROP_COUNTS.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from suite import (  # noqa: E402
    ENV, PASSWORD, PORT_SMTPS, PORT_SUB, RESULTS, RUNDIR, Check, Run, creds,
    log_offset, log_since, mailsend, no_secret, postfix, run_check,
)


def report(c: Check, run: Run, code: int) -> Optional[dict]:
    """The one JSON object on stdout, with the exit code and `ok` agreeing."""
    c.equal(run.code, code, f"exit code ({run.describe()})")
    j = run.json
    if not c.expect(j is not None, f"one JSON object on stdout, got {run.stdout!r}"):
        return None
    c.equal(j.get("ok"), code == 0, "ok")
    c.equal(j.get("exit_code"), code, "exit_code")
    for key in ("host", "port", "addresses", "greeting", "capabilities", "tls", "certificate",
                "auth", "warnings", "errors", "ok"):
        c.expect(key in j, f"key {key} missing")
    no_secret(c, run, PASSWORD)
    return j


def no_mail_in_log(c: Check, offset: int, sessions: int) -> None:
    """Postfix logged `sessions` disconnects since `offset`, none with a
    mail= (or rcpt=, data=) command count."""
    deadline = time.monotonic() + 5
    while True:
        lines = [l for l in log_since(offset).splitlines() if "disconnect from" in l]
        if len(lines) >= sessions or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    c.expect(len(lines) >= sessions, f"{sessions} disconnects logged, got {lines}")
    for line in lines:
        c.expect(not re.search(r"\b(mail|rcpt|data)=", line), f"a mail transaction logged: {line}")


def t_submission(c: Check) -> None:
    offset = log_offset()
    j = report(c, mailsend(["check", "--json", *postfix(PORT_SUB)], env=creds()), 0)
    if j is None:
        return
    c.equal(j["host"], "localhost", "host")
    c.expect("127.0.0.1" in j["addresses"], f"addresses {j['addresses']}")
    c.expect((j["greeting"] or "").startswith("220 mx.interop.invalid"), f"greeting {j['greeting']!r}")
    c.expect("STARTTLS" in (j.get("capabilities_before_tls") or []), "STARTTLS offered in clear")
    c.expect(any(x.startswith("AUTH") for x in j["capabilities"]), f"AUTH under TLS: {j['capabilities']}")
    c.expect((j["tls"] or {}).get("version", "").startswith("TLSv1."), f"tls {j['tls']}")
    cert = j["certificate"] or {}
    c.equal(cert.get("verified"), True, "certificate verified")
    c.equal(cert.get("subject"), "CN=localhost", "certificate subject")
    c.expect("localhost" in cert.get("names", []), f"names {cert.get('names')}")
    c.expect(isinstance(cert.get("days_left"), int) and cert["days_left"] >= 28, f"days_left {cert}")
    c.equal(j["auth"], {"offered": ["PLAIN", "LOGIN"], "chosen": "PLAIN", "accepted": True}, "auth")
    c.equal(j["warnings"], [], "warnings")
    no_mail_in_log(c, offset, 1)


def t_smtps(c: Check) -> None:
    offset = log_offset()
    j = report(c, mailsend(["check", "--json", *postfix(PORT_SMTPS, "tls")], env=creds()), 0)
    if j is None:
        return
    c.equal(j.get("capabilities_before_tls"), None, "nothing offered in clear")
    c.equal(j["auth"].get("accepted"), True, "auth accepted")
    c.equal((j["certificate"] or {}).get("verified"), True, "certificate verified")
    no_mail_in_log(c, offset, 1)


def t_wrong_password(c: Check) -> None:
    wrong = "Wrong-" + PASSWORD[::-1]
    offset = log_offset()
    run = mailsend(["check", "--json", *postfix(PORT_SUB)], env=creds(wrong))
    j = report(c, run, 77)
    no_secret(c, run, wrong)
    if j is None:
        return
    c.equal(j["auth"].get("accepted"), False, "auth accepted")
    c.expect(any("535" in e for e in j["errors"]), f"errors {j['errors']}")
    c.expect(any(l.startswith("mailsend: error: ") and "535" in l for l in run.stderr.splitlines()),
             f"one error line on stderr: {run.stderr!r}")
    no_mail_in_log(c, offset, 1)


def t_untrusted(c: Check) -> None:
    # No --ca-file: the private CA is not trusted.
    j = report(c, mailsend(["check", "--json", *postfix(PORT_SUB, ca=False)], env=creds()), 77)
    if j is None:
        return
    cert = j["certificate"] or {}
    c.equal(cert.get("verified"), False, "verified")
    c.equal(cert.get("subject"), "CN=localhost", "the refused leaf is still described")
    # Postfix sends its chain with the root: OpenSSL calls that a self-signed certificate in the chain.
    c.expect("certificate" in (cert.get("error") or ""), f"error {cert.get('error')!r}")
    c.equal(cert.get("issuer"), "CN=mailsend interop test CA", "issuer")
    c.expect("--ca-file" in (j.get("hint") or ""), f"hint {j.get('hint')!r}")
    c.equal(j["auth"].get("accepted"), None, "no login tried")


def t_starttls_port_as_implicit(c: Check) -> None:
    args = ["check", "--json", *postfix(PORT_SUB, "tls")]
    j = report(c, mailsend(args, env=creds()), 76)
    if j is not None:
        c.expect("--tls starttls" in (j.get("hint") or ""), f"hint {j.get('hint')!r}")


def t_implicit_port_as_starttls(c: Check) -> None:
    args = ["check", "--json", *postfix(PORT_SMTPS, "starttls")]
    args[args.index("--timeout") + 1] = "2s"
    j = report(c, mailsend(args, env=creds()), 75)
    if j is not None:
        c.expect("--tls tls" in (j.get("hint") or ""), f"hint {j.get('hint')!r}")


def t_human(c: Check) -> None:
    run = mailsend(["check", *postfix(PORT_SUB)], env=creds())
    c.equal(run.code, 0, f"exit code ({run.describe()})")
    for want in ("greeting     220 ", "verified     yes", "credentials accepted", "result       ok"):
        c.expect(want in run.stdout, f"{want!r} not in {run.stdout!r}")
    no_secret(c, run, PASSWORD)


def main() -> int:
    RUNDIR.mkdir(parents=True, exist_ok=True)
    checks = [
        ("check: Postfix submission described (STARTTLS, certificate verified, AUTH accepted), no MAIL",
         t_submission),
        ("check: Postfix smtps (implicit TLS) described, AUTH accepted, no MAIL", t_smtps),
        ("check: wrong password is 77 with ok false and auth accepted false, no MAIL", t_wrong_password),
        ("check: CA not trusted is 77, the refused certificate still described", t_untrusted),
        ("check: --tls tls on the STARTTLS port is 76 with a hint naming --tls starttls",
         t_starttls_port_as_implicit),
        ("check: STARTTLS on the implicit-TLS port is 75 with a hint naming --tls tls",
         t_implicit_port_as_starttls),
        ("check: the human report, one line per step", t_human),
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
