"""Fault injection for worker processes started by tests/test_faults.py (put on PYTHONPATH there only).

FTSPACE_FAULT=kill:TEXT  when the process opens a file for writing whose path contains TEXT, it writes
                         one byte of it and SIGKILLs itself: a crash in the middle of a checkpoint write.
FTSPACE_FAULT=full:TEXT  such files are opened on /dev/full instead, so their writes fail with the
                         kernel's own ENOSPC ("No space left on device"), as on a full disk.
"""

import builtins
import os
import signal

_kind, _, _target = os.environ.get("FTSPACE_FAULT", "").partition(":")

if _target:
    _open = builtins.open

    def _faulty_open(file, mode="r", *args, **kwargs):
        if (isinstance(file, (str, bytes, os.PathLike)) and _target in os.fsdecode(file)
                and any(c in mode for c in "wax+")):
            if _kind == "kill":
                with _open(file, mode, *args, **kwargs) as fh:
                    fh.write(b"{" if "b" in mode else "{")
                    fh.flush()
                    os.fsync(fh.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
            if _kind == "full":
                return _open("/dev/full", "wb" if "b" in mode else "w", *args, **kwargs)
        return _open(file, mode, *args, **kwargs)

    builtins.open = _faulty_open
