"""Benchmark 12: what a ZeroGPU training call spends before its first step (imports, loading the model, restoring
the run), for the bundled model on this CPU, in a fresh worker (a new fork: nothing imported) and in a reused one
(the same process, its imports kept), and the share of a 60 s (signed out) and a 120 s (free account) call it uses.

Each round is one child process that makes two calls of `zerogpu.train_slice` (off a Space it runs in-process, as
a ZeroGPU worker runs it): the first call in the child is the fresh worker's, the second (another run of the same
model) the reused one's. The figure is the `load_s` each call's slice event records (from the call's start to its
first step)."""

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import run_json, save, spread  # noqa: E402

CHILD = """
import json, sys
from pathlib import Path
from ftspace.targets.zerogpu import train_slice
from ftspace.runs import Run
out = []
for run_dir in sys.argv[1:]:
    assert train_slice(run_dir, 600) == "completed"
    out.append(next(e for e in Run(Path(run_dir)).events()[0] if e.get("slice"))["load_s"])
print(json.dumps(out))
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ftspace-bench-zerogpu-"))
    os.environ.update(FTSPACE_RUNS=str(tmp / "runs"), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    from ftspace import runs
    from ftspace.config import RunConfig
    from ftspace.engine.prepare import prepare_in_place

    cfg = RunConfig(model_name="default", dataset="example:facts", max_steps=2, save_steps=1000, backend="auto")
    fresh, reused = [], []
    for _ in range(args.rounds):
        pair = [runs.create(cfg) for _ in range(2)]
        for run in pair:
            prepare_in_place(str(run.path))  # on the CPU before any call, as the drive does
        first, second = run_json(["-c", CHILD, *[str(r.path) for r in pair]],
                                 env={"FTSPACE_RUNS": str(tmp / "runs"), "HF_HUB_OFFLINE": "1"})
        fresh.append(first)
        reused.append(second)
    f, r = spread(fresh), spread(reused)
    save("zerogpu_calls", {
        "setup": f"bundled model (SmolLM2-135M), example:facts, 2 steps a call; {args.rounds} rounds, each a child "
                 "process making a fresh worker's call then a reused worker's",
        "fresh_load_s": f, "reused_load_s": r,
        "share_of_call": {f"{cap}s": {"fresh": round(f["median"] / cap, 3), "reused": round(r["median"] / cap, 3)}
                          for cap in (60, 120)}})


if __name__ == "__main__":
    main()
