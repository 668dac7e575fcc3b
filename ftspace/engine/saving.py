"""Crash-safe saving: a checkpoint or adapter folder appears whole or not at all.

The Trainer writes a checkpoint file by file into its final folder, so a crash or a full disk in the
middle leaves half a checkpoint under the name resume looks for. Here every checkpoint is written
into `checkpoints/.incoming/`, flushed to disk, and renamed into place in one step; the adapter goes
the same way. Earlier checkpoints are only removed (save_total_limit) after the new one is in place.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from ftspace.engine import distributed

STAGING = ".incoming"
# Seconds kept free at the end of a ZeroGPU call for the checkpoint save (a LoRA checkpoint: adapter and
# optimizer state, a few seconds even for an 8B model's adapter).
SAVE_MARGIN_S = float(os.environ.get("FTSPACE_SAVE_MARGIN_S", 10))


def _fsync_tree(path: Path):
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        with open(file, "rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(path)


def _fsync_dir(path: Path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _move_into_place(src: Path, dst: Path):
    """Rename a complete folder to its final name, replacing an older one of that name."""
    _fsync_tree(src)
    if dst.exists():
        old = dst.with_name(f"{STAGING}-old-{dst.name}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)
    _fsync_dir(dst.parent)


def atomic_checkpoints(trainer, checkpoints_dir: Path):
    """Make `trainer` write each checkpoint into a staging folder and rename it into place when done."""
    from transformers.trainer_utils import rotate_checkpoints

    checkpoints_dir = Path(checkpoints_dir)
    save_checkpoint, staging = trainer._save_checkpoint, checkpoints_dir / STAGING

    main = trainer.args.process_index == 0  # with several processes each writes its part (its RNG state)

    def _save_checkpoint(model, trial):
        if main:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        distributed.barrier()
        trainer._get_output_dir = lambda trial=None: str(staging)
        try:
            save_checkpoint(model, trial)
            distributed.barrier()  # every process's part is written
            if main:
                name = f"checkpoint-{trainer.state.global_step}"
                _move_into_place(staging / name, checkpoints_dir / name)
        finally:
            del trainer._get_output_dir  # back to the class's method
            if main:
                shutil.rmtree(staging, ignore_errors=True)
        distributed.barrier()
        if main:
            rotate_checkpoints(str(checkpoints_dir), trainer.args.save_total_limit,
                               trainer.state.best_model_checkpoint, use_mtime=False)

    trainer._save_checkpoint = _save_checkpoint


def save_adapter(model, tokenizer, adapter_dir: Path):
    """The PEFT adapter with its tokenizer, written beside `adapter_dir` and renamed into place."""
    adapter_dir = Path(adapter_dir)
    incoming = adapter_dir.with_name(f"{STAGING}-{adapter_dir.name}")
    shutil.rmtree(incoming, ignore_errors=True)
    try:
        model.save_pretrained(incoming)
        tokenizer.save_pretrained(incoming)
        _move_into_place(incoming, adapter_dir)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)


def is_disk_full(error: BaseException) -> bool:
    """ENOSPC from Python, or torch's C++ writer reporting the same ("file write failed")."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(error) or "file write failed" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")


def use_checkpoint(run, step: int | None) -> Path:
    """Make a checkpoint's weights the run's adapter (chat, evaluation and publishing use `run.adapter_dir`);
    step None goes back to the final adapter. The final one is kept aside in `adapter-final/`, the tokenizer
    and chat template stay the final adapter's."""
    adapter, final = Path(run.adapter_dir), Path(run.adapter_dir).with_name("adapter-final")
    if not (adapter / "adapter_config.json").exists():
        from ftspace.errors import RunError

        raise RunError(f"Run {run.id} has no adapter yet ({run.status()['status']}): wait for it to finish.")
    if not final.exists():
        staging = final.with_name(f"{STAGING}-{final.name}")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(adapter, staging)
        _move_into_place(staging, final)
    source = final if step is None else run.checkpoint(step)
    incoming = adapter.with_name(f"{STAGING}-{adapter.name}")
    shutil.rmtree(incoming, ignore_errors=True)
    shutil.copytree(final, incoming)
    for name in ADAPTER_FILES:
        shutil.copy2(source / name, incoming / name)
    _move_into_place(incoming, adapter)
    run.set_status(adapter_checkpoint=None if step is None else f"checkpoint-{step}")
    return adapter
