"""Sends one message to MailLaser with smtplib's send_message, as an
application would. Used by tests/it/python_smtplib.rs.

    python3 send_message.py PORT CASE

CASE is one of:
  utf8       non-ASCII sender local part, display names and subject: smtplib
             asks for SMTPUTF8 (and BODY=8BITMIME) because MailLaser offers it
  multipart  text + HTML alternative and an attachment, STARTTLS first
  rejected   an unknown recipient next to a known one

Prints one JSON line: what smtplib saw (features, refused recipients).
The SMTP dialogue is on stderr (debug level 1).
"""

import json
import smtplib
import ssl
import sys
from email.message import EmailMessage

TARGET = "alerts@example.com"
OTHER_TARGET = "ops@example.com"


def message_utf8():
    msg = EmailMessage()
    msg["From"] = "Jörg Müller <jörg@example.org>"
    msg["To"] = TARGET
    msg["Subject"] = "Grüße aus Köln ✓"
    msg["Message-ID"] = "<python-utf8@example.org>"
    msg.set_content("Hallo Welt €\nZweite Zeile ✓\n")
    return msg


def message_multipart():
    msg = EmailMessage()
    msg["From"] = "Py Thon <python@example.org>"
    msg["To"] = f"{TARGET}, {OTHER_TARGET}"
    msg["Subject"] = "multipart from smtplib"
    msg["Message-ID"] = "<python-multipart@example.org>"
    msg.set_content("plain part\n.leading dot\n")
    msg.add_alternative("<p>html <b>part</b></p>\n", subtype="html")
    msg.add_attachment(
        b"\x00\x01binary\xff", maintype="application", subtype="octet-stream",
        filename="data.bin",
    )
    return msg


def message_rejected():
    msg = EmailMessage()
    msg["From"] = "python@example.org"
    msg["To"] = f"{TARGET}, nobody@example.com"
    msg["Subject"] = "one of two"
    msg.set_content("partly refused\n")
    return msg


def main():
    port, case = int(sys.argv[1]), sys.argv[2]
    with smtplib.SMTP("127.0.0.1", port, local_hostname="python.test", timeout=20) as smtp:
        smtp.set_debuglevel(1)
        if case == "multipart":
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # MailLaser's self-signed certificate
            smtp.starttls(context=context)
        message = {
            "utf8": message_utf8,
            "multipart": message_multipart,
            "rejected": message_rejected,
        }[case]()
        refused = smtp.send_message(message)
        smtp.ehlo_or_helo_if_needed()
        print(json.dumps({
            "refused": {rcpt: [code, text.decode()] for rcpt, (code, text) in refused.items()},
            "features": sorted(smtp.esmtp_features),
            "tls": case == "multipart",
        }))


if __name__ == "__main__":
    main()
