"""Where we run: a Hugging Face Space, a shared app, ZeroGPU; where runs, uploads and caches are kept.

Each question is answered here only, from the environment, and nothing here imports another ftspace module
(every layer may ask). Read on each call, not once at import: an app's processes and the tests set these
before they start a child, and a child reads its own.
"""

from __future__ import annotations

import os
from pathlib import Path


def on_space() -> bool:
    """Running as a Hugging Face Space (the same test Gradio uses before it enables OAuth)."""
    return os.environ.get("SYSTEM") == "spaces" and bool(os.environ.get("SPACE_ID"))


def multi_user() -> bool:
    """A shared app: a Space (or FTSPACE_MULTIUSER=1), where each visitor sees only their own runs, acts with
    their own token, and the limits apply."""
    return on_space() or os.environ.get("FTSPACE_MULTIUSER") == "1"


def on_zerogpu() -> bool:
    """A ZeroGPU Space: no CUDA in the app process, the GPU only inside `@spaces.GPU` calls."""
    return bool(os.environ.get("SPACES_ZERO_GPU"))


def cache_dir() -> Path:
    """ftspace's own cache (the converted default model, Hub downloads): $FTSPACE_CACHE or ~/.cache/ftspace."""
    return Path(os.environ.get("FTSPACE_CACHE", Path.home() / ".cache" / "ftspace"))


def persistent_storage() -> Path | None:
    """A Space's persistent storage (mounted at /data when the owner added it), if this machine has it."""
    if not on_space():
        return None
    path = Path(os.environ.get("FTSPACE_PERSISTENT_DIR", "/data"))
    return path if path.is_dir() and os.access(path, os.W_OK) else None


def runs_root() -> Path:
    """$FTSPACE_RUNS, else a Space's persistent storage (runs survive restarts), else ./runs."""
    if os.environ.get("FTSPACE_RUNS"):
        return Path(os.environ["FTSPACE_RUNS"]).resolve()
    storage = persistent_storage()
    return (storage / "ftspace" / "runs") if storage else Path("runs").resolve()


def uploads_dir() -> Path:
    """Visitors' uploads, beside the runs (one folder per owner inside: ftspace.owners)."""
    return runs_root().parent / "uploads"
