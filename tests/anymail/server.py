"""A real Django app with django-anymail's inbound webhooks, for
tests/it/formats.rs: MailLaser's postmark, sendgrid and mailgun formats are
parsed by anymail's own views, exactly as a consumer's app would.

    python server.py RECORDS_FILE MAILGUN_SIGNING_KEY BASIC_AUTH

Serves on a free loopback port, printed as the first line of stdout
("port N"). Every `anymail.signals.inbound` signal appends one JSON line
to RECORDS_FILE with what anymail parsed. Webhook requests must carry
BASIC_AUTH ("user:password", anymail's WEBHOOK_SECRET).
"""

import hashlib
import json
import sys
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import django
from django.conf import settings

records_file, mailgun_key, basic_auth = sys.argv[1:4]

settings.configure(
    DEBUG=False,
    SECRET_KEY="maillaser-anymail-test",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["anymail"],
    MIDDLEWARE=[],
    ANYMAIL={
        "WEBHOOK_SECRET": basic_auth,
        "MAILGUN_WEBHOOK_SIGNING_KEY": mailgun_key,
    },
    LOGGING_CONFIG=None,
)
django.setup()

from anymail.signals import inbound  # noqa: E402
from django.urls import include, path  # noqa: E402

urlpatterns = [path("anymail/", include("anymail.urls"))]

lock = threading.Lock()


def address(addr):
    return {"name": addr.display_name, "address": addr.addr_spec}


def on_inbound(sender, event, esp_name, **kwargs):
    message = event.message
    record = {
        "esp": esp_name,
        "event_id": event.event_id,
        "from": address(message.from_email) if message.from_email else None,
        "to": [address(a) for a in message.to],
        "cc": [address(a) for a in message.cc],
        "subject": message.subject,
        "text": message.text,
        "html": message.html,
        "stripped_text": message.stripped_text,
        "envelope_sender": message.envelope_sender,
        "envelope_recipient": message.envelope_recipient,
        "attachments": [
            {
                "filename": part.get_filename(),
                "content_type": part.get_content_type(),
                "sha256": hashlib.sha256(part.get_content_bytes()).hexdigest(),
            }
            for part in message.attachments
        ],
        "inlines": [
            {
                "content_id": content_id,
                "content_type": part.get_content_type(),
                "sha256": hashlib.sha256(part.get_content_bytes()).hexdigest(),
            }
            for content_id, part in sorted(message.content_id_map.items())
        ],
    }
    with lock, open(records_file, "a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")


inbound.connect(on_inbound)


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class Quiet(WSGIRequestHandler):
    def log_message(self, format, *args):
        sys.stderr.write("anymail-server: " + (format % args) + "\n")


from django.core.wsgi import get_wsgi_application  # noqa: E402

server = make_server(
    "127.0.0.1", 0, get_wsgi_application(), server_class=Server, handler_class=Quiet
)
print(f"port {server.server_port}", flush=True)
server.serve_forever()
