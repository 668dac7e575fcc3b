"""`ftspace ARGS` for tests: in this process (`main(argv)`, its output captured) where a fresh interpreter proves
nothing more, or as the real command in a subprocess: one per command family stays a subprocess, so the module
entry point and the quiet imports (library chatter kept off the terminal) are proven where they happen."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cli_process(*args, cwd: Path = ROOT, env: dict | None = None, timeout: int = 280) -> subprocess.CompletedProcess:
    """`python -m ftspace ARGS` in a fresh process (stdin closed, output captured)."""
    return subprocess.run([sys.executable, "-m", "ftspace", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=timeout, stdin=subprocess.DEVNULL)


@contextlib.contextmanager
def _environment(env: dict):
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update({k: str(v) for k, v in env.items()})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def cli(*args, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    """`ftspace ARGS` run by `ftspace.__main__.main` in this process, with what it writes to stdout and stderr
    captured and its exit code (argparse's SystemExit included): the same CompletedProcess a subprocess gives.
    `env` is set for the call only; settings a library reads once at import (huggingface_hub's endpoint) need the
    subprocess form."""
    from ftspace.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    old_cwd = Path.cwd()
    os.chdir(cwd)
    try:
        with _environment(env or {}), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as e:  # argparse: --help (0) and usage errors (2)
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    finally:
        os.chdir(old_cwd)
    return subprocess.CompletedProcess(["ftspace", *map(str, args)], code, out.getvalue(), err.getvalue())
