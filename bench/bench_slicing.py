"""Benchmark 6: ZeroGPU slicing. What cutting a run into GPU calls costs, each call in a fresh process.

On ZeroGPU every call runs in a fork of the app process, which has never imported torch (ftspace.offload
keeps it out), so each call pays the imports, the model load and the checkpoint restore, and saves a
checkpoint before its time is up. Here each slice is a fresh Python process doing what a call does
(`worker.execute` with a deadline counted from the process's start) with --call-seconds per call, and the
same run is also trained unsliced by a worker; both are prepared beforehand (ZeroGPU prepares on CPU),
interleaved over --rounds. Overhead of a slice = its wall time minus its training time (imports, load,
restore, the final checkpoint save, exit)."""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, ratio, save, spread  # noqa: E402

CALL = ("import sys, time; granted = time.time()\n"
        "from pathlib import Path\nfrom ftspace.engine import worker\nfrom ftspace.runs import Run\n"
        "print(worker.execute(Run(Path(sys.argv[1])), resume=True, deadline=granted + float(sys.argv[2])))")


def new_run(a):
    from ftspace import runs
    from ftspace.config import RunConfig
    from ftspace.engine.prepare import prepare

    run = runs.create(RunConfig(model_name="default", dataset="example:facts", max_steps=a.steps,
                                per_device_train_batch_size=8, gradient_accumulation_steps=1, max_seq_length=128,
                                learning_rate=1e-3, gradient_checkpointing=False, save_steps=10**6))
    prepare(run, None, log=lambda *_: None)
    return run


def sliced(a, env) -> dict:
    run, slices = new_run(a), []
    while run.read_status().get("status") not in ("completed", "failed") and len(slices) < 50:
        t0 = time.time()
        subprocess.run([sys.executable, "-c", CALL, str(run.path), str(a.call_seconds)], cwd=ROOT, env=env,
                       check=True, capture_output=True)
        wall = time.time() - t0
        event = [e for e in run.events()[0] if e.get("slice")][-1]
        slices.append({"wall_s": round(wall, 2), "load_s": event["load_s"], "train_s": event["train_s"],
                       "overhead_s": round(wall - event["train_s"], 2)})
    st = run.read_status()
    assert st["status"] == "completed" and st["step"] == a.steps, st
    return {"wall_s": round(sum(s["wall_s"] for s in slices), 2), "slices": slices}


def unsliced(a, env) -> dict:
    from ftspace.targets import local

    run = new_run(a)
    t0 = time.time()
    local.launch(run)
    st = run.wait()
    assert st["status"] == "completed", st
    return {"wall_s": round(time.time() - t0, 2), "train_s": round(st["train_runtime_s"], 2)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--call-seconds", type=int, default=30, help="each call's length, loading included")
    p.add_argument("--save-margin", type=int, default=5, help="FTSPACE_SAVE_MARGIN_S: kept free for the save")
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    os.environ["FTSPACE_RUNS"] = tempfile.mkdtemp(prefix="ftspace-bench-slices-")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FTSPACE_SAVE_MARGIN_S": str(a.save_margin)}
    rounds = []
    for i in range(a.rounds):  # interleaved: unsliced, sliced, unsliced, ...
        rounds.append({"unsliced": unsliced(a, env), "sliced": sliced(a, env)})
        print(i + 1, rounds[-1], flush=True)
    every_slice = [s for r in rounds for s in r["sliced"]["slices"]]
    result = {"setup": {"model": "SmolLM2-135M-Instruct (bundled)", "steps": a.steps, "call_seconds": a.call_seconds,
                        "save_margin_s": a.save_margin, "rounds": a.rounds, "slices_per_run":
                            spread(len(r["sliced"]["slices"]) for r in rounds)},
              "slice_overhead_s": spread(s["overhead_s"] for s in every_slice),
              "slice_load_s": spread(s["load_s"] for s in every_slice),
              "overhead_share": spread(s["overhead_s"] / s["wall_s"] for s in every_slice),
              "sliced_wall_s": spread(r["sliced"]["wall_s"] for r in rounds),
              "unsliced_wall_s": spread(r["unsliced"]["wall_s"] for r in rounds),
              "sliced_over_unsliced": spread(r["sliced"]["wall_s"] / r["unsliced"]["wall_s"] for r in rounds),
              "rounds_detail": rounds,
              "note": "overhead = a slice's wall time minus its training time: Python start, imports, model load, "
                      "checkpoint restore, the checkpoint save at the end, exit. The unsliced run is one worker "
                      "(it pays the imports and load once); both were prepared (tokenized) beforehand."}
    print({k: v for k, v in result.items() if k != "rounds_detail"})
    save("slicing", result)
    print("ratio of medians:", ratio(result["sliced_wall_s"]["median"], result["unsliced_wall_s"]["median"]))


if __name__ == "__main__":
    main()
