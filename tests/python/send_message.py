"""Sends one message to MailLaser with smtplib's send_message, as an
application would. Used by tests/it/python_smtplib.rs.

    python3 send_message.py PORT CASE [ARG...]

CASE is one of:
  utf8       non-ASCII sender local part, display names and subject: smtplib
             asks for SMTPUTF8 (and BODY=8BITMIME) because MailLaser offers it
  multipart  text + HTML alternative and an attachment, STARTTLS first
  rejected   an unknown recipient next to a known one
  attachments IMAGE PDF
             text, an HTML alternative showing the file IMAGE inline as a
             related image/png (Content-ID from make_msgid), the file PDF
             as "Résumé 2026.pdf" (RFC 2231 file name) and an attached
             message/rfc822

Prints one JSON line: what smtplib saw (features, refused recipients) and,
for attachments, the image's Content-ID as make_msgid made it ("cid").
The SMTP dialogue is on stderr (debug level 1).
"""

import email.utils
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


def message_attachments(image_path, pdf_path):
    """The shape of the Python documentation's HTML example, with files."""
    msg = EmailMessage()
    msg["From"] = "Py Thon <python@example.org>"
    msg["To"] = TARGET
    msg["Subject"] = "attachments from smtplib"
    msg["Message-ID"] = "<python-attachments@example.org>"
    cid = email.utils.make_msgid(domain="python.test")
    msg.set_content("See the chart.\n")
    # cid[1:-1]: the msgid without its angle brackets, as a cid: URL has it.
    msg.add_alternative(f'<p>See <img src="cid:{cid[1:-1]}"></p>\n', subtype="html")
    with open(image_path, "rb") as image:
        # Turns the HTML part into multipart/related: HTML, then the image
        # (Content-Disposition: inline).
        msg.get_payload()[1].add_related(image.read(), "image", "png", cid=cid)
    with open(pdf_path, "rb") as pdf:
        msg.add_attachment(
            pdf.read(), maintype="application", subtype="pdf", filename="Résumé 2026.pdf",
        )
    inner = EmailMessage()
    inner["From"] = "inner@example.org"
    inner["To"] = "someone@example.com"
    inner["Subject"] = "the forwarded one"
    inner["Message-ID"] = "<inner-1@example.org>"
    inner.set_content("inner body\n")
    msg.add_attachment(inner)
    return msg, {"cid": cid}


def main():
    port, case = int(sys.argv[1]), sys.argv[2]
    with smtplib.SMTP("127.0.0.1", port, local_hostname="python.test", timeout=20) as smtp:
        smtp.set_debuglevel(1)
        if case == "multipart":
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # MailLaser's self-signed certificate
            smtp.starttls(context=context)
        if case == "attachments":
            message, extra = message_attachments(*sys.argv[3:5])
        else:
            extra = {}
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
            **extra,
        }))


if __name__ == "__main__":
    main()
