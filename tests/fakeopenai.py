"""A fake OpenAI-compatible chat server on 127.0.0.1: scripted replies, recorded requests.

`reply` is a function of the request's messages returning the reply text, or (status, body) for an
error; `script` (a list) is used first, one entry per request, in order. Every request is recorded
with its headers and body, and the most requests ever in flight at once is kept.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler

from localserver import LocalServer


def chat_completion(text: str, model: str = "fake") -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}


class FakeOpenAI(LocalServer):
    def __init__(self, reply=None, script=(), delay_s: float = 0.0):
        self.reply = reply or (lambda messages: "[]")
        self.script = list(script)
        self.delay_s = delay_s
        self.requests: list[dict] = []  # {"path", "headers", "body"}
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        self._serve()

    def prompts(self) -> list[str]:
        return [m["content"] for r in self.requests for m in r["body"]["messages"] if m["role"] == "user"]

    def _handler(fake):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                with fake._lock:
                    fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                    scripted = fake.script.pop(0) if fake.script else None
                try:
                    time.sleep(fake.delay_s)
                    if self.path.rstrip("/") != "/v1/chat/completions":
                        return self._send(404, {"error": {"message": "not found"}})
                    out = scripted if scripted is not None else fake.reply(body["messages"])
                    if isinstance(out, tuple):
                        return self._send(out[0], out[1])
                    return self._send(200, chat_completion(out, body.get("model", "")))
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

            def _send(self, status, body):
                data = json.dumps(body).encode() if not isinstance(body, bytes) else body
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
