"""Data-parallel training: one worker process per GPU, started by torchrun, each on its share of every batch.

`command` is how the launcher (ftspace.targets.local.launch, and a Hugging Face Job's entry point) starts the worker:
plainly for one process, through `torch.distributed.run` (torchrun) for several. Several processes come from
the GPUs there are, or from RunConfig.num_processes (which also makes a CPU run several gloo processes: how the
tests check this path without a GPU). Inside the worker, process 0 alone writes the run's files (status,
events, the adapter; the Trainer writes checkpoints from it too), and the others follow: every decision to
stop is agreed by all of them, so none waits for a step the others will not take.

per_device_train_batch_size stays per process: each optimizer step sees batch x accumulation x processes
examples, and max_steps counts optimizer steps, so N processes train the same steps on N times the data.
"""

from __future__ import annotations

import os
import sys
import time


def world() -> tuple[int, int]:
    """(this process's rank, the number of processes)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main() -> bool:
    return world()[0] == 0


def log(message: str):
    """A line of the run's log, with the time: with several processes, the main one says it."""
    if is_main():
        print(f"[ftspace {time.strftime('%H:%M:%S')}] {message}", flush=True)


def processes(num_processes: int) -> int:
    """How many worker processes a run gets: the config's number, else one per GPU of this machine."""
    if num_processes > 0:
        return num_processes
    from ftspace.models import hardware

    return max(1, hardware().get("gpus", 1))


def command(run_dir: str, resume: bool, count: int) -> list[str]:
    args = ["-m", "ftspace.engine.worker", str(run_dir)] + (["--resume"] if resume else [])
    if count <= 1:
        return [sys.executable, *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={count}", *args]


def setup() -> str | None:
    """Join the process group when there are several processes (NCCL on GPUs, gloo on CPUs); its backend."""
    rank, size = world()
    if size <= 1:
        return None
    import torch
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return backend


def barrier():
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def agree(flag: bool) -> bool:
    """True on every process when it is true on any (a STOP file seen by one ends the step for all)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def run_for_this_process(path):
    """The run as this process handles it: process 0 writes it; the others read it and write nothing."""
    from ftspace.runs import Run

    class FollowerRun(Run):
        def set_status(self, only_if_active: bool = False, **fields) -> dict:
            return self.read_status()

    return Run(path) if is_main() else FollowerRun(path)


def load_cpu_checkpoints_on_cpu(trainer):
    """Several CPU processes: transformers loads a checkpoint's optimizer state onto `args.device` when there are
    several processes, and on a CPU that is "cpu:0", a place torch.load cannot restore tensors to (it raises
    "don't know how to restore data location ... (tagged with cpu:0)"). Load it onto the CPU, as one process does."""
    import torch

    load = trainer._load_optimizer_and_scheduler

    def _load_optimizer_and_scheduler(checkpoint):
        original = torch.load

        def load_on_cpu(*args, **kwargs):
            return original(*args, **{**kwargs, "map_location": "cpu"})

        torch.load = load_on_cpu
        try:
            return load(checkpoint)
        finally:
            torch.load = original

    trainer._load_optimizer_and_scheduler = _load_optimizer_and_scheduler
