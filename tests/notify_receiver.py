"""A webhook receiver on 127.0.0.1 for the notification tests (the deploy_history callback's and
the console's): it keeps each delivery whose HMAC-SHA256 signature is right."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """A webhook receiver: keeps each delivery whose HMAC-SHA256 signature is right."""

    def __init__(self, secret: str) -> None:
        self.deliveries: list[dict] = []
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(secret.encode(), body,
                                                hashlib.sha256).hexdigest()
                if hmac.compare_digest(self.headers.get("X-Slipway-Signature-256", ""),
                                       expected):
                    receiver.deliveries.append(json.loads(body))
                    self.send_response(204)
                else:
                    receiver.bad_signatures += 1
                    self.send_response(401)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/deploy"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[str]:
        return [delivery["event"] for delivery in self.deliveries]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
