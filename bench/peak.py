"""Run a module as `python -m` would, and write this process's own peak resident memory when it exits.

    python bench/peak.py OUT.json -m ftspace data inspect big.jsonl

OUT.json gets {"peak_mb": ...} from /proc/self/status (VmHWM): the process's own high-water mark. (The
ru_maxrss that wait4 reports for a child starts at the parent's peak, carried through fork and exec, so
from a big parent such as pytest it measures the parent.) Exit status and output are the module's own.
"""

import atexit
import json
import runpy
import sys


def main():
    out, flag, module, *args = sys.argv[1:]
    assert flag == "-m", "usage: peak.py OUT.json -m MODULE [ARGS...]"

    sys.argv = [module, *args]
    sys.path[0] = ""  # as `python -m` has it: the current folder, not this script's
    from ftspace.memory import peak_rss_mb  # standard library only: costs nothing measurable

    def record():
        with open(out, "w") as fh:
            json.dump({"peak_mb": peak_rss_mb()}, fh)

    atexit.register(record)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
