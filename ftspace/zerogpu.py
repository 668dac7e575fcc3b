"""ZeroGPU: training as a chain of GPU time slices, and chat generation inside a GPU call.

On a ZeroGPU Space each `@spaces.GPU` call runs in a forked worker with a capped duration. A run is
trained as slices of SLICE_SECONDS (well under the cap): each slice loads the model, resumes from the
last checkpoint, trains until its deadline and saves a checkpoint; `run_sliced` chains slices until
the run is done. Unsloth is imported only inside the GPU function, and nothing here touches CUDA at
import time. Off Spaces `spaces.GPU` is a no-op, so the same path runs (and is tested) on CPU.
"""

from __future__ import annotations

import os
from pathlib import Path

SLICE_SECONDS = int(os.environ.get("FTSPACE_SLICE_SECONDS", 480))  # training per GPU call; 15 min calls were refused
SETUP_MARGIN = 120  # seconds a slice may spend loading the model and saving on top of its training time


def on_zerogpu() -> bool:
    return bool(os.environ.get("SPACES_ZERO_GPU"))


def _gpu(duration):
    try:
        import spaces
    except ImportError:
        return lambda fn: fn
    return spaces.GPU(duration=duration)


@_gpu(duration=SLICE_SECONDS + SETUP_MARGIN)
def train_slice(run_dir: str, seconds: float) -> str:
    """One slice: load, resume, train for `seconds`, checkpoint; 'completed', 'sliced' or 'failed'.
    Arguments and result are picklable (ZeroGPU runs this in a forked worker)."""
    from ftspace.engine import worker
    from ftspace.runs import Run

    return worker.execute(Run(Path(run_dir)), resume=True, time_budget=seconds)


def run_sliced(run_dir: str, slice_seconds: float | None = None, on_slice=None) -> dict:
    """Chain slices until the run completes, is stopped, or a slice fails (e.g. out of GPU quota)."""
    from ftspace.runs import Run, write_json_atomic

    run = Run(Path(run_dir))
    seconds = slice_seconds or SLICE_SECONDS
    # The training happens in this process (or its ZeroGPU fork): liveness follows this process.
    write_json_atomic(run.path / "worker.json", {"pid": os.getpid(), "started": _create_time()})
    run.set_status(status="running", waiting=False, error=None, slice=0)
    n = 0
    while True:
        n += 1
        run.set_status(slice=n)
        if on_slice:
            on_slice(n)
        try:
            outcome = train_slice(str(run.path), seconds)
        except Exception as e:  # quota exhausted, preempted, ...: keep the run resumable
            message = str(e).splitlines()[0] if str(e) else type(e).__name__
            run.set_status(status="interrupted", error=f"GPU slice {n} ended early: {message}. "
                                                       "Resume the run later; it continues from its last checkpoint.")
            return run.status()
        if outcome != "sliced" or run.read_status().get("status") != "running":
            return run.status()


def _create_time():
    import psutil

    return psutil.Process(os.getpid()).create_time()


@_gpu(duration=120)
def generate_on_gpu(source: tuple, messages: list, settings: dict, base: bool) -> str:
    """A whole reply inside a GPU call (ZeroGPU cannot stream across the fork boundary cheaply)."""
    from ftspace.chat import GenerationSettings, load_cached

    return load_cached(source).reply(messages, GenerationSettings(**settings), base=base)
