"""A fake ZeroGPU device API on 127.0.0.1: the endpoints `spaces` (0.51.3, spaces/zero/api.py) calls.

    POST /startup-report                    200
    POST /schedule?cgroupPath&taskId&enableQueue&tokenVersion&durationSeconds[&token][&gpuSize]
         200 {"idle", "nvidiaIndex", "nvidiaUUID", "allowToken"}   a GPU is granted
         429 {"left", "wait"} + X-Approve-Result                  quota used up (wait >= 0) or the
                                                                   duration is not allowed (wait < 0)
         503                                                       no GPU free ("No GPU was available")
    POST /allow?allowToken&pid              200
    POST /release?allowToken&fail           200

Every /schedule is recorded with its parameters (the visitor's x-ip-token arrives as `token`). Each
visitor token has a daily quota in seconds; a grant is charged the time from /schedule to /release.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlparse

from localserver import LocalServer


class FakeZeroGPU(LocalServer):
    def __init__(self, max_duration: int = 300, quota_s: float = 1e9):
        self.max_duration = max_duration  # longer requests are "illegal duration"
        self.quota_s = quota_s  # per token (and for token-less calls) per day
        self.used: dict[str | None, float] = {}
        self.schedules: list[dict] = []  # the query parameters of every /schedule
        self.releases: list[dict] = []
        self.busy_next = 0  # answer the next n /schedule with 503 (no GPU free)
        self.grants: dict[str, tuple[str | None, float]] = {}  # allowToken -> (token, granted at)
        self.lock = threading.Lock()
        self._serve()

    def _handler(fake):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body=None, headers=None):
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                url = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with fake.lock:
                    if url.path == "/startup-report":
                        return self._send(200, {})
                    if url.path == "/schedule":
                        fake.schedules.append(q)
                        token, duration = q.get("token"), int(q.get("durationSeconds", 60))
                        auth = {"X-Authenticated": "regular"} if token else {}
                        if fake.busy_next:
                            fake.busy_next -= 1
                            return self._send(503, {"detail": "no GPU available"})
                        if duration > fake.max_duration:
                            return self._send(429, {"left": int(fake.quota_s), "wait": -1},
                                              {**auth, "X-Approve-Result": "illegal-duration"})
                        left = fake.quota_s - fake.used.get(token, 0.0)
                        if duration > left:
                            return self._send(429, {"left": int(max(0, left)), "wait": 9060},
                                              {**auth, "X-Approve-Result": "quota-exceeded"})
                        allow = secrets.token_hex(8)
                        fake.grants[allow] = (token, time.time())
                        return self._send(200, {"idle": True, "nvidiaIndex": 0, "nvidiaUUID": "GPU-fake-0000",
                                                "allowToken": allow}, {**auth, "X-Approve-Result": "approved"})
                    if url.path == "/allow":
                        return self._send(200 if q.get("allowToken") in fake.grants else 404, {})
                    if url.path == "/release":
                        fake.releases.append(q)
                        grant = fake.grants.pop(q.get("allowToken"), None)
                        if grant is None:
                            return self._send(404, {})
                        token, since = grant
                        fake.used[token] = fake.used.get(token, 0.0) + (time.time() - since)
                        return self._send(200, {})
                return self._send(404, {"detail": f"no route {url.path}"})

        return Handler
