#!/usr/bin/env python3
"""`mailsend check` against the private Postfix: the report of a good
submission port (STARTTLS + AUTH) and of the implicit-TLS port, a wrong
password (77), a CA not trusted (77, the certificate still described), and
the two port mix-ups with the setting that fits. Postfix's own log proves
that no MAIL command was ever sent.

Client certificates: a listener added to the running instance here (so
postfix.sh stays as it is) asks for a client certificate and relays only
for one the test CA signed (`smtpd_tls_ask_ccert`,
`permit_tls_all_clientcerts`); mailsend's --client-cert gets the message
delivered, without it Postfix refuses to relay.

Started by run.sh after suite.py, with the same INTEROP_* variables; prints
`ok - ...` / `not ok - ...` lines and writes its counts to $INTEROP_COUNTS.
"""

from __future__ import annotations

import re
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from smtpfault import free_port  # noqa: E402
from suite import (  # noqa: E402
    ENV, PASSWORD, PKI, PORT_SMTPS, PORT_SUB, RESULTS, RUNDIR, WORK, Check, Run, creds,
    delivered, log_offset, log_since, mailsend, no_secret, postfix, run_check, sent_ok,
)

STATE: dict = {}


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


# ---------------------------------------------------------------- client certificates

def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


def t_ccert_listener(c: Check) -> None:
    """A client certificate signed by the test CA, and a listener that asks
    for one and relays only for a verified one."""
    d = WORK / "ccert"
    d.mkdir(exist_ok=True)
    key, csr, cert, ext = d / "client.key", d / "client.csr", d / "client.pem", d / "ext.cnf"
    ext.write_text("keyUsage = critical, digitalSignature\nextendedKeyUsage = clientAuth\n")
    sh("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key))
    key.chmod(0o600)
    sh("openssl", "req", "-new", "-key", str(key), "-subj", "/CN=mailsend interop client", "-out", str(csr))
    sh("openssl", "x509", "-req", "-in", str(csr), "-CA", str(PKI / "ca.pem"), "-CAkey", str(PKI / "ca.key"),
       "-set_serial", str(secrets.randbits(60)), "-days", "2", "-extfile", str(ext), "-out", str(cert))
    conf = str(WORK / "postfix" / "etc")
    port = free_port()
    service = f"127.0.0.1:{port}/inet"
    sh("postconf", "-c", conf, "-M", f"{service}=127.0.0.1:{port} inet n - n - - smtpd")
    for param in ("syslog_name=postfix/ccert", "smtpd_tls_security_level=encrypt",
                  "smtpd_tls_ask_ccert=yes", f"smtpd_tls_CAfile={PKI / 'ca.pem'}",
                  "smtpd_sasl_auth_enable=no",
                  "smtpd_relay_restrictions=permit_tls_all_clientcerts,reject"):
        sh("postconf", "-c", conf, "-P", f"{service}/{param}")
    sh("postfix", "-c", conf, "reload")
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if not c.expect(time.monotonic() < deadline, f"listener on {port} not up after reload"):
                return
            time.sleep(0.1)
    STATE["ccert"] = (port, cert, key)


def ccert_send(extra: list[str]) -> Run:
    port = STATE["ccert"][0]
    return mailsend(postfix(port) + extra + [
        "--from", "ccert@example.test", "--to", "ccert-rcpt@example.test",
        "--subject", "client certificate", "--body", "sent with a client certificate\n", "--json"])


def t_ccert_send(c: Check) -> None:
    if not c.expect("ccert" in STATE, "no client-certificate listener"):
        return
    _, cert, key = STATE["ccert"]
    offset = log_offset()
    run = ccert_send(["--client-cert", str(cert), "--client-key", str(key)])
    j = sent_ok(c, run, ["ccert-rcpt@example.test"])
    if j is None:
        return
    c.equal(len(delivered(j["message_id"], 1)), 1, "copies delivered")
    log = log_since(offset)
    c.expect(re.search(r"postfix/ccert/smtpd\[\d+\]: Trusted TLS connection established", log),
             "Postfix did not log a trusted client certificate: "
             + " | ".join(l for l in log.splitlines() if "ccert" in l)[-400:])


def t_ccert_missing(c: Check) -> None:
    if not c.expect("ccert" in STATE, "no client-certificate listener"):
        return
    run = ccert_send([])
    c.equal(run.code, 69, f"exit code ({run.describe()})")
    c.expect("refused: 554 " in run.stderr and "Access denied" in run.stderr, f"stderr {run.stderr!r}")


def t_ccert_check(c: Check) -> None:
    if not c.expect("ccert" in STATE, "no client-certificate listener"):
        return
    port, cert, key = STATE["ccert"]
    j = report(c, mailsend(["check", "--json", *postfix(port), "--client-cert", str(cert),
                            "--client-key", str(key)]), 0)
    if j is not None:
        c.equal(j.get("client_certificate"), "CN=mailsend interop client", "client_certificate")


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
        ("client certificate: a Postfix listener asking for one (smtpd_tls_ask_ccert) added", t_ccert_listener),
        ("client certificate: --client-cert/--client-key, Postfix trusts it and relays (delivered)",
         t_ccert_send),
        ("client certificate: without one, the same listener refuses to relay (69)", t_ccert_missing),
        ("client certificate: check reports the certificate presented", t_ccert_check),
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
