"""A fake ZeroGPU device API on 127.0.0.1: the endpoints `spaces` (0.51.3, spaces/zero/api.py) calls, enforcing what
the service enforces.

    POST /startup-report                    200
    POST /schedule?cgroupPath&taskId&enableQueue&tokenVersion&durationSeconds[&token][&gpuSize]
         200 {"idle", "nvidiaIndex", "nvidiaUUID", "allowToken"}   a GPU is granted
         200 text/event-stream: ping ... succeeded {...}           granted after a wait in the queue
         429 {"left", "wait"} + X-Approve-Result                  quota used up (wait >= 0) or the
                                                                   duration is not allowed (wait < 0)
         401                                                       the visitor's proxy token has expired
         503                                                       no GPU free ("No GPU was available")
    POST /allow?allowToken&pid              200 (a new worker's first call: its clock starts, the fork holds the
                                            GPU; a reused worker's call starts its clock at the grant)
    POST /release?allowToken&fail           200, 404 for a grant already ended

What it enforces, as the service does:
- **Fresh or reused workers.** `fresh_workers=True` answers `idle: false`, so `spaces` forks a new worker for every
  call (the service may move a task to another GPU at any call); the earlier worker of that task is killed. Each
  grant records which it was (`grants_log`).
- **The duration.** A call still holding its GPU `grace_s` after its requested duration (from /allow) has its
  process killed: `spaces` then raises "GPU task aborted". Recorded in `aborted`. `abort_when`, a condition set
  by a test, kills the call holding the GPU the moment it holds (once): an abort at a chosen point of the work,
  not at a time a slow machine may not keep.
- **The quota**: a request for more seconds than the token has left today is refused; a call is charged the
  seconds it held the GPU (/allow to /release, or to its abort).
- **The queue.** `queue_next = n` makes the next n requests wait `queue_s` in the queue (pings, then success); a
  visitor who left meanwhile gets "Connection closed by visitor while queueing" from `spaces`.
- **Expired proxy tokens**: a token in `expired` is answered 401 ("Expired ZeroGPU proxy token").

Every /schedule is recorded with its parameters (the visitor's x-ip-token arrives as `token`).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlparse

from localserver import LocalServer


@dataclass
class Grant:
    token: str | None
    task: str
    duration: float
    fresh: bool
    granted: float
    allowed: float | None = None
    pid: int | None = None
    ended: float | None = None


class FakeZeroGPU(LocalServer):
    def __init__(self, max_duration: int = 300, quota_s: float = 1e9, fresh_workers: bool = False,
                 grace_s: float = 30.0, queue_s: float = 1.5):
        self.max_duration = max_duration  # longer requests are "illegal duration"
        self.quota_s = quota_s  # per token (and for token-less calls) per day
        self.fresh_workers = fresh_workers
        self.grace_s = grace_s  # how far past its duration a call may run before it is killed
        self.queue_s = queue_s
        self.used: dict[str | None, float] = {}
        self.schedules: list[dict] = []  # the query parameters of every /schedule
        self.releases: list[dict] = []
        self.busy_next = 0  # answer the next n /schedule with 503 (no GPU free)
        self.queue_next = 0  # the next n /schedule wait in the queue first
        self.expired: set[str] = set()  # proxy tokens answered 401
        self.grants: dict[str, Grant] = {}  # allowToken -> its grant, while it holds the GPU
        self.grants_log: list[Grant] = []  # every grant, in order
        self.aborted: list[Grant] = []  # calls killed for overrunning their duration
        self.workers: dict[str, int] = {}  # taskId -> pid of its last worker
        self.abort_when = None  # a condition (no arguments): the call holding the GPU when it holds is killed, once
        self.lock = threading.Lock()
        self._serve()

    # --- the service's side

    def _grant(self, token, task: str, duration: float) -> dict:
        allow = secrets.token_hex(8)
        grant = Grant(token, task, duration, self.fresh_workers, time.time())
        self.grants[allow] = grant
        self.grants_log.append(grant)
        old = self.workers.get(task)
        busy = old and any(g.pid == old for g in self.grants.values() if g is not grant)
        if self.fresh_workers and old and not busy:
            _kill(self.workers.pop(task))  # the task's earlier worker, now idle, is gone: spaces forks another
        elif old and not busy:
            # `spaces` reuses the idle worker, which sent /allow with its first call only: its clock starts now
            self._allowed(allow, old)
        return {"idle": not self.fresh_workers, "nvidiaIndex": 0, "nvidiaUUID": "GPU-fake-0000", "allowToken": allow}

    def _allowed(self, allow: str, pid: int):
        grant = self.grants[allow]
        grant.allowed, grant.pid = time.time(), pid
        self.workers[grant.task] = pid
        threading.Thread(target=self._watch, args=(allow, grant), daemon=True).start()

    def _end(self, allow: str, aborted: bool = False) -> bool:
        grant = self.grants.pop(allow, None)
        if grant is None:
            return False
        grant.ended = time.time()
        self.used[grant.token] = self.used.get(grant.token, 0.0) + (grant.ended - (grant.allowed or grant.granted))
        if aborted:
            self.aborted.append(grant)
        return True

    def _watch(self, allow: str, grant: Grant):
        """Kill the call's process once it overruns its duration by more than grace_s, or once `abort_when` holds."""
        while allow in self.grants:
            overrun = time.time() >= (grant.allowed or grant.granted) + grant.duration + self.grace_s
            condition = self.abort_when
            if overrun or (condition is not None and condition()):
                with self.lock:
                    if allow in self.grants and grant.pid:
                        if not overrun:
                            self.abort_when = None
                        _kill(grant.pid)
                        self._end(allow, aborted=True)
                return
            time.sleep(0.05)

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

            def _queue(self, token, task, duration, auth):
                """Server-sent events: pings while the request waits, then the grant (one event per chunk, as
                `spaces` parses them)."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("X-Queuing-Reason", "node")
                for k, v in {**auth, "X-Approve-Result": "approved"}.items():
                    self.send_header(k, v)
                self.end_headers()
                waited = 0.0
                while waited < fake.queue_s:
                    self.wfile.write(b"event: ping\ndata: {}\n\n")
                    self.wfile.flush()
                    time.sleep(0.5)
                    waited += 0.5
                with fake.lock:
                    granted = fake._grant(token, task, duration)
                self.wfile.write(f"event: succeeded\ndata: {json.dumps(granted)}\n\n".encode())
                self.wfile.flush()
                self.close_connection = True

            def do_POST(self):
                url = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                queued = None
                with fake.lock:
                    if url.path == "/startup-report":
                        return self._send(200, {})
                    if url.path == "/schedule":
                        fake.schedules.append(q)
                        token, duration = q.get("token"), int(q.get("durationSeconds", 60))
                        task = q.get("taskId", "0")
                        auth = {"X-Authenticated": "regular"} if token else {}
                        if token in fake.expired:
                            return self._send(401, {"detail": "expired token"})
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
                        if fake.queue_next:
                            fake.queue_next -= 1
                            queued = (token, task, duration, auth)
                        else:
                            return self._send(200, fake._grant(token, task, duration),
                                              {**auth, "X-Approve-Result": "approved"})
                    elif url.path == "/allow":
                        if q.get("allowToken") not in fake.grants:
                            return self._send(404, {})
                        fake._allowed(q["allowToken"], int(q["pid"]))
                        return self._send(200, {})
                    elif url.path == "/release":
                        fake.releases.append(q)
                        return self._send(200 if fake._end(q.get("allowToken")) else 404, {})
                    else:
                        return self._send(404, {"detail": f"no route {url.path}"})
                self._queue(*queued)  # outside the lock: it waits

        return Handler


def _kill(pid: int):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
