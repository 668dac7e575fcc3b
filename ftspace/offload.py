"""Work that needs transformers, done outside the app process when the app runs on ZeroGPU.

On ZeroGPU a training slice runs in a fork of the app process, and Unsloth must be imported before
transformers, trl and peft in the process that trains, or its patches do not apply. Whatever the app
process has imported, the fork has too. So on ZeroGPU the app process never imports them: tokenizer
statistics, estimates and the preparation of a run (download, convert, tokenize) run in a fresh
Python process through `call`, their arguments (a visitor's token among them) passed over a pipe, never
on the command line, in the environment or on disk. Elsewhere `call` runs the function in-process.

    python -m ftspace.offload        reads {"fn": "module:function", "kwargs": {...}} on stdin and
                                     writes {"ok": result} or {"error": [class, message]} on stdout
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

from ftspace import errors
from ftspace.env import on_zerogpu


def call(fn: str, log_path: Path | None = None, isolate: bool | None = None, **kwargs):
    """module:function(**kwargs), in a fresh process on ZeroGPU (or with isolate=True), else here.
    JSON-able in and out; an FtspaceError raised there is raised here with its message; its output goes
    to `log_path`."""
    if not (on_zerogpu() if isolate is None else isolate):
        return _resolve(fn)(**kwargs)
    project_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [project_root, os.environ.get("PYTHONPATH")])),
               TOKENIZERS_PARALLELISM="false")
    env.pop("SPACES_ZERO_GPU", None)  # the helper never touches the GPU, nor imports `spaces`
    from ftspace.access import child_env

    env = child_env(env)  # a shared app's helper: no server credentials (the visitor's token comes over the pipe)
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        proc = subprocess.run([sys.executable, "-m", "ftspace.offload"], input=json.dumps({"fn": fn, "kwargs": kwargs}),
                              stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=project_root)
    finally:
        if log_path:
            log.close()
    lines = proc.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise RuntimeError(f"{fn} failed in its helper process (exit {proc.returncode})") from None
    if "error" in answer:
        name, message = answer["error"]
        raise getattr(errors, name, errors.FtspaceError)(message)
    return answer["ok"]


def _resolve(fn: str):
    module, _, name = fn.partition(":")
    return getattr(importlib.import_module(module), name)


def main():
    request = json.loads(sys.stdin.read())
    stdout = sys.stdout
    sys.stdout = sys.stderr  # library chatter goes to the log; the last stdout line is the answer
    try:
        result = {"ok": _resolve(request["fn"])(**request["kwargs"])}
    except errors.FtspaceError as e:
        result = {"error": [type(e).__name__, str(e)]}
    stdout.write(json.dumps(result) + "\n")
    stdout.flush()


if __name__ == "__main__":
    main()
