"""`make demo` wall time, this checkout against another (e.g. the commit before a change), interleaved.

    .venv/bin/python bench/demo_wall.py --before /path/to/a/worktree/of/the/old/commit [--rounds 2]

Each round runs `make demo` in the old tree, then in this one (the same .venv: its setup stamp is already
fresh, so the time is the demo's own), with a fresh runs folder. Training time and the time after training
(loading the chat model, the four answers) are read from the run's files.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, save, spread  # noqa: E402


def once(tree: Path) -> dict:
    runs_dir = tree / "runs"
    shutil.rmtree(runs_dir, ignore_errors=True)
    t0 = time.time()
    out = subprocess.run(["make", "-s", "demo"], cwd=tree, capture_output=True, text=True, timeout=1800,
                         env={k: v for k, v in os.environ.items() if k not in ("FTSPACE_RUNS", "PYTHONPATH")})
    end = time.time()
    if out.returncode != 0 or "Quillhaven" not in out.stdout:
        raise RuntimeError(f"make demo failed in {tree}:\n{out.stderr[-2000:]}")
    [status] = list(runs_dir.glob("*/status.json"))
    st = json.loads(status.read_text())
    return {"wall_s": end - t0, "train_s": st["finished"] - st["started"], "after_s": end - st["finished"]}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--before", required=True, type=Path, help="a worktree of the commit to compare with")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--label", default="before")
    a = p.parse_args()
    got = {a.label: [], "this checkout": []}
    for _ in range(a.rounds):
        got[a.label].append(once(a.before))
        got["this checkout"].append(once(ROOT))
        print(got, flush=True)
    contenders = {name: {k: spread(r[k] for r in rs) for k in ("wall_s", "train_s", "after_s")}
                  for name, rs in got.items()}
    result = {"rounds": a.rounds, "contenders": contenders,
              "note": f"'{a.label}' is {subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=a.before, capture_output=True, text=True).stdout.strip()}, "
                      "this checkout is " + subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                                         capture_output=True, text=True).stdout.strip()
                      + "; training = the worker's start to its end (imports, load, 30 steps, save), after = "
                        "from then to the answers printed"}
    print(result)
    save("demo_wall", result)


if __name__ == "__main__":
    main()
