"""Dependency chatter stays out of what people read.

Importing the training stack prints warnings a user cannot act on: torchao's "Failed to load ..."
kernels, torch's pytree deprecation lines (glog style, "W1122 10:53:24 ..."), bitsandbytes' kernel
lookup, transformers' notices. A training worker's output is its run's log file, so they land there;
the app's log panel shows only ftspace's own lines and errors (`is_own`). A CLI command imports the stack through `preload`,
which sends that output, and whatever those libraries log later, to `library_log()` instead of the
terminal.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path

OWN = re.compile(r"^(?:\[ftspace\b|Traceback \(most recent call last\)|[\w.]*(?:Error|Exception)\b:?)")

_log_file = None


def is_own(line: str) -> bool:
    """A line the app's log panel shows: ftspace's own (loading, data, steps, checkpoints, done) and errors;
    whatever else libraries print stays in the run's log file.

    >>> is_own("[ftspace] step 3/30 loss 1.2, ETA 40s"), is_own("RuntimeError: CUDA out of memory")
    (True, True)
    >>> is_own("Unsloth 2026.10.9: no GPU found, training on CPU"), is_own("Loading weights: 100%|###| 20/20")
    (False, False)
    """
    return bool(OWN.match(line))


def library_log() -> Path:
    """Where a CLI process keeps what libraries print: ~/.cache/ftspace/library.log (FTSPACE_LIBRARY_LOG)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ftspace" / "library.log"
    return Path(os.environ.get("FTSPACE_LIBRARY_LOG", default))


def preload(*modules: str):
    """Import `modules` (default: torch, transformers, peft) with their output going to `library_log()`;
    loggers they set up while importing keep writing there. Already imported: nothing happens."""
    global _log_file
    wanted = [m for m in (modules or ("torch", "transformers", "peft")) if m not in sys.modules]
    if not wanted:
        return
    if _log_file is None:
        path = library_log()
        path.parent.mkdir(parents=True, exist_ok=True)
        _log_file = open(path, "a", buffering=1, encoding="utf-8")  # stays open: handlers hold it
        if _log_file.fileno() <= 2:  # started with a standard stream closed: keep clear of 0-2
            import fcntl

            _log_file = os.fdopen(fcntl.fcntl(_log_file.fileno(), fcntl.F_DUPFD, 3), "a", buffering=1,
                                  encoding="utf-8")
    with _redirected(_log_file):
        import importlib

        for name in wanted:
            importlib.import_module(name)
        with contextlib.suppress(ImportError):  # its handler is created on first use: create it now
            from transformers.utils import logging as hf_logging

            hf_logging.get_logger("transformers")
            hf_logging.disable_progress_bar()  # "Loading weights: 100%|...": the CLI says what it loads


@contextlib.contextmanager
def descriptors_to(fileno: int):
    """File descriptors 1 and 2 (where C code and child processes write too) to `fileno` for a while, then
    back. Python's own sys.stdout/sys.stderr write through them, so they follow."""
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    os.dup2(fileno, 1), os.dup2(fileno, 2)
    try:
        yield
    finally:
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(saved[0], 1), os.dup2(saved[1], 2)
        os.close(saved[0]), os.close(saved[1])


@contextlib.contextmanager
def _redirected(log):
    """Everything to `log`: the descriptors, and sys.stdout/sys.stderr themselves (so a logging handler
    created meanwhile keeps writing to `log`)."""
    with descriptors_to(log.fileno()), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            yield
        finally:
            log.flush()
