#!/usr/bin/env python3
"""Harness self-check: Python's own smtplib (not mailsend) sends through
the private Postfix, on the plain port and on the submission port with
STARTTLS + AUTH, and waits for both copies in the Maildir. If this fails,
the instance is broken, and the mailsend checks would only measure that.

    smoke.py MAILDIR CA PASSWORD_FILE PLAIN_PORT SUBMISSION_PORT
"""

import email
import email.policy
import smtplib
import ssl
import sys
import time
import uuid
from email.message import EmailMessage
from pathlib import Path


def main() -> int:
    maildir, ca, password_file, plain, submission = sys.argv[1:6]
    password = Path(password_file).read_text()
    ids = []
    for port, auth in ((int(plain), False), (int(submission), True)):
        msg = EmailMessage()
        msg["From"] = "sender@example.test"
        msg["To"] = "smoke@example.test"
        msg["Subject"] = f"harness smoke test, port {port}"
        msg["Message-ID"] = f"<{uuid.uuid4().hex}@smoke.example.test>"
        msg.set_content("smoke\n")
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
                if auth:
                    s.starttls(context=ssl.create_default_context(cafile=ca))
                    s.login("sender@example.test", password)
                s.send_message(msg)
        except (OSError, smtplib.SMTPException) as e:
            print(f"smtplib on port {port}: {type(e).__name__}: {e}")
            return 1
        ids.append(msg["Message-ID"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = set()
        for f in (Path(maildir) / "new").glob("*"):
            with open(f, "rb") as fh:
                found.add(str(email.message_from_binary_file(fh, policy=email.policy.default)["Message-ID"]))
        if all(i in found for i in ids):
            return 0
        time.sleep(0.1)
    print(f"smoke messages not delivered to {maildir} within 10 s")
    return 1


if __name__ == "__main__":
    sys.exit(main())
