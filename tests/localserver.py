"""What every fake service of the tests shares: an HTTP server on 127.0.0.1, in a thread, as a context."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer


class LocalServer:
    """Subclasses define `_handler()` (a BaseHTTPRequestHandler class) and call `_serve()` last in __init__."""

    def _serve(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
