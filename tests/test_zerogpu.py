"""The ZeroGPU slicing path on CPU: spaces.GPU is a no-op off Spaces, a short fake cap forces slices."""

import json
import subprocess
import sys

from apptools import ROOT
from ftspace import runs, zerogpu
from ftspace.config import RunConfig


def config(tiny_model):
    return RunConfig(model_name=str(tiny_model), dataset="example:alpaca", max_steps=24, save_steps=100,
                     per_device_train_batch_size=2, gradient_accumulation_steps=2, max_seq_length=128,
                     gradient_checkpointing=False, backend="hf")


def test_sliced_run_ends_with_the_same_steps_as_an_unsliced_one(tiny_model, runs_dir):
    sliced = runs.create(config(tiny_model))
    code = ("import json, sys; from ftspace.zerogpu import run_sliced; "
            "print(json.dumps(run_sliced(sys.argv[1], slice_seconds=0.4)))")
    out = subprocess.run([sys.executable, "-c", code, str(sliced.path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    status = json.loads(out.stdout.strip().splitlines()[-1])
    slices = [e for e in sliced.events()[0] if e.get("slice")]
    assert status["status"] == "completed", status
    assert len(slices) >= 3, f"a 0.4 s cap should need several slices, got {len(slices)}"
    assert status["slice"] == len(slices)
    assert all(e["load_s"] > 0 and e["train_s"] > 0 for e in slices)
    # every step trained exactly once across the slices
    steps = [e["step"] for e in sliced.events()[0] if "loss" in e]
    assert steps == list(range(1, 25))

    plain, _ = runs.start(config(tiny_model))
    plain_status = plain.wait(timeout=300)
    assert plain_status["status"] == "completed"
    assert (status["step"], status["total_steps"]) == (plain_status["step"], plain_status["total_steps"]) == (24, 24)


def test_out_of_quota_keeps_a_resumable_run(tiny_model, runs_dir, monkeypatch):
    run = runs.create(config(tiny_model))

    def refuse(run_dir, seconds):
        raise RuntimeError("You have exceeded your GPU quota (150s requested vs. 23s left). Try again in 2:31:00")

    monkeypatch.setattr(zerogpu, "train_slice", refuse)
    status = zerogpu.run_sliced(str(run.path), slice_seconds=5)
    assert status["status"] == "interrupted"
    assert "exceeded your GPU quota" in status["error"] and "Resume the run later" in status["error"]
    runs.prepare_resume(run)  # no exception: it can be resumed when quota is back


def test_gpu_functions_touch_no_cuda_at_import():
    code = "import sys, ftspace.zerogpu; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-2000:]
