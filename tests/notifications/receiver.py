"""A webhook receiver on loopback: a real HTTP server that Apprise's `json://` URLs post to.

It answers each POST with the next status of `answers` (then 200) and keeps every body it
was sent, so a test sees what a channel received and can make it fail first."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self, answers=()):
        self.answers, self.received = list(answers), []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with receiver.lock:
                    status = receiver.answers.pop(0) if receiver.answers else 200
                    receiver.received.append({"status": status, "path": self.path, "body": body})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The Apprise URL of this receiver (short timeouts: it is on this machine)."""
        return f"json://127.0.0.1:{self.server.server_port}/hook?cto=2&rto=5"

    def delivered(self) -> list[dict]:
        """The message bodies it accepted (answered 200)."""
        with self.lock:
            return [r["body"] for r in self.received if r["status"] == 200]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
