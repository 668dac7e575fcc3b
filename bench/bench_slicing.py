"""Benchmark 6: ZeroGPU slicing. How much of each slice goes to loading and resuming versus training,
read from the run's events file. On CPU the slices are forced short (--slice-seconds) so a small run
needs several (--call-seconds caps each call, counted from the call's start as on ZeroGPU, loading
included); on a ZeroGPU Space the same numbers come from real calls."""

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, save  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--call-seconds", type=int, default=60,
                   help="cap on each GPU call (FTSPACE_ZEROGPU_MAX_CALL_S; 60 s is a signed-out visitor's cap)")
    a = p.parse_args()
    os.environ["FTSPACE_RUNS"] = tempfile.mkdtemp(prefix="ftspace-bench-slices-")
    from ftspace import runs
    from ftspace.config import RunConfig

    run = runs.create(RunConfig(model_name="default", dataset="example:facts", max_steps=a.steps,
                                per_device_train_batch_size=8, gradient_accumulation_steps=1, max_seq_length=128,
                                learning_rate=1e-3, gradient_checkpointing=False))
    import subprocess

    code = f"from ftspace.zerogpu import run_sliced; run_sliced({str(run.path)!r})"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT), "FTSPACE_ZEROGPU_MAX_CALL_S": str(a.call_seconds)})
    slices = [e for e in run.events()[0] if e.get("slice")]
    rows = [{"slice": i + 1, "load_s": e["load_s"], "train_s": e["train_s"],
             "overhead_share": round(e["load_s"] / (e["load_s"] + e["train_s"]), 3)} for i, e in enumerate(slices)]
    total_load = sum(r["load_s"] for r in rows)
    total_train = sum(r["train_s"] for r in rows)
    result = {"setup": {"model": "SmolLM2-135M-Instruct (bundled)", "steps": a.steps,
                        "call_seconds": a.call_seconds, "status": run.status()["status"]},
              "slices": rows, "overhead_share_total": round(total_load / (total_load + total_train), 3),
              "note": "load_s = from the GPU call's start to the first training step (imports, model load, "
                      "checkpoint restore); each call also keeps FTSPACE_SAVE_MARGIN_S (10 s) free for its "
                      "checkpoint save. Here all calls run in one process, so only the first pays the imports; "
                      "on ZeroGPU `spaces` reuses its forked worker while it is idle, and a fresh fork pays "
                      "them again."}
    print(result)
    save("slicing", result)


if __name__ == "__main__":
    main()
