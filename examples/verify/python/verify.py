"""Verifies the signatures of a MailLaser webhook request, both schemes,
with Python's standard library only (docs/webhook.md).

    WEBHOOK_SECRET=... python3 verify.py maillaser HEADERS BODY
    WEBHOOK_SECRET=whsec_... python3 verify.py standard HEADERS BODY

HEADERS is a file of `Name: value` lines as in HTTP, BODY the raw request
body. Prints `valid` and exits 0, or prints `invalid` and exits 1.
"""

import base64
import binascii
import hashlib
import hmac
import time

TOLERANCE = 300  # seconds a timestamp may be away from our clock (replays)


def _header(headers, name: str) -> str:
    """The value of header `name` (lower case), whatever case `headers` uses."""
    return next((v for k, v in headers.items() if k.lower() == name), "")


def _fresh(timestamp: str, tolerance: int) -> bool:
    return timestamp.isascii() and timestamp.isdigit() and abs(time.time() - int(timestamp)) <= tolerance


def verify_maillaser_signature(secret: bytes, headers, body: bytes, tolerance: int = TOLERANCE) -> bool:
    """X-MailLaser-Signature-256: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>.

    `headers` maps header names (any case) to values; `body` is the raw
    request body, before any JSON parsing.
    """
    timestamp = _header(headers, "x-maillaser-timestamp")
    signature = _header(headers, "x-maillaser-signature-256")
    if not _fresh(timestamp, tolerance):
        return False
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    expected = "sha256=" + mac.hexdigest()
    return hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8"))


def verify_standard_webhook(secret: str, headers, body: bytes, tolerance: int = TOLERANCE) -> bool:
    """Standard Webhooks: `webhook-signature` holds space-separated
    `v1,<base64 HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>`
    entries (several during a key rotation); any one matching is enough.
    `secret` is `whsec_` followed by the base64 key.
    """
    msg_id = _header(headers, "webhook-id")
    timestamp = _header(headers, "webhook-timestamp")
    if not msg_id or not _fresh(timestamp, tolerance):
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = msg_id.encode("utf-8") + b"." + timestamp.encode("ascii") + b"." + body
    expected = hmac.new(key, signed, hashlib.sha256).digest()
    for entry in _header(headers, "webhook-signature").split(" "):
        version, _, encoded = entry.partition(",")
        try:
            offered = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            continue
        if version == "v1" and hmac.compare_digest(expected, offered):
            return True
    return False


def _read_headers(path: str) -> dict:
    headers = {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip()] = value.strip()
    return headers


def main(argv) -> int:
    import os
    import sys

    secret = os.environ.get("WEBHOOK_SECRET", "")
    if len(argv) != 4 or argv[1] not in ("maillaser", "standard") or not secret:
        print(__doc__, file=sys.stderr)
        return 2
    headers = _read_headers(argv[2])
    with open(argv[3], "rb") as file:
        body = file.read()
    if argv[1] == "maillaser":
        valid = verify_maillaser_signature(secret.encode("utf-8"), headers, body)
    else:
        valid = verify_standard_webhook(secret, headers, body)
    print("valid" if valid else "invalid")
    return 0 if valid else 1


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv))
