"""`ftspace app`: the web app, as `python app.py` serves it (127.0.0.1:7860 unless told)."""

from __future__ import annotations

import os

from ftspace.cli.common import examples


def add_commands(sub) -> None:
    a = sub.add_parser("app", help="serve the web app in your browser (as `python app.py`; Ctrl-C ends it)",
                       **examples("ftspace app", "ftspace app --port 7861",
                                  "ftspace app --host 0.0.0.0   # reachable from other machines: mind who can",
                                  "ftspace app --mcp   # also the agents' tools at /gradio_api/mcp/"))
    a.add_argument("--host", help="address to listen on (default 127.0.0.1, or $GRADIO_SERVER_NAME)")
    a.add_argument("--port", type=int, help="port (default 7860, or $GRADIO_SERVER_PORT)")
    a.add_argument("--mcp", action="store_true", help="also serve the MCP tools for agents (as FTSPACE_MCP=1)")
    a.set_defaults(func=cmd_app)


def cmd_app(args) -> int:
    if args.host:
        os.environ["GRADIO_SERVER_NAME"] = args.host
    if args.port:
        os.environ["GRADIO_SERVER_PORT"] = str(args.port)
    if args.mcp:
        os.environ["FTSPACE_MCP"] = "1"
    from ftspace.ui import serve

    serve()
    return 0
