"""Code and environment shared by the sandbox providers' tests."""

from __future__ import annotations

# A tiny app for start_server: answers "hello" on $HOST:$PORT (every interface by default).
HELLO_SERVER = """
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args):
        pass

print("serving", flush=True)
HTTPServer((os.environ.get("HOST", "0.0.0.0"), int(os.environ["PORT"])), Hello).serve_forever()
"""

# What the service's own environment holds; none of it may reach sandboxed code.
SERVICE_SECRETS = {
    "SLACK_BOT_TOKEN": "xoxb-secret-bot-token",
    "SLACK_SIGNING_SECRET": "signing-secret-value",
    "GROQ_API_KEY": "gsk_secret_groq_key",
    "E2B_API_KEY": "e2b_secret_key_from_the_environment",
    "DATABASE_URL": "postgresql://user:pw@db/trainbot",
    "TRAINBOT_API_TOKEN": "trainbot-secret-api-token",
}
