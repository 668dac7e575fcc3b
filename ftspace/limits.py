"""What one caller of a shared app may take: every limit, its default and the variable that changes it.

The defaults are sized for a ZeroGPU Space (one H200 slice lent per call, a 2-core CPU host, ~50 GB of disk
shared by every visitor). The owner raises or lowers each with the environment variable named beside it
(listed in docs/space.md); a refusal names the limit and that variable. A self-hosted single-user app has
no limits (the machine is its user's). Read on every check, so a test or an owner can change them live.

Nothing here imports anything heavy; `ftspace.targets.admit` applies the run limits, and the modules that
take the other inputs (uploads, chat, creation, documents) ask `limit()` themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ftspace.errors import ConfigError
from ftspace.env import multi_user


@dataclass(frozen=True)
class Limit:
    name: str
    env: str
    default: float
    unit: str
    what: str


LIMITS = {item.name: item for item in (
    Limit("runs_per_caller", "FTSPACE_MAX_RUNS_PER_CALLER", 2, "runs", "runs one caller may have queued or training"),
    Limit("queue", "FTSPACE_MAX_QUEUE", 20, "runs", "runs waiting or training on this app, everyone's together"),
    Limit("max_steps", "FTSPACE_MAX_STEPS", 2000, "steps", "optimizer steps of one run (also epochs x rows)"),
    Limit("epochs", "FTSPACE_MAX_EPOCHS", 5, "epochs", "passes over the data of a run trained by epochs"),
    Limit("max_seq_length", "FTSPACE_MAX_SEQ_LENGTH", 4096, "tokens", "tokens per training example"),
    Limit("num_processes", "FTSPACE_MAX_PROCESSES", 1, "processes", "training processes of one run (never "
          "more than the machine's GPUs)"),
    Limit("rows", "FTSPACE_MAX_ROWS", 50_000, "rows", "rows one run (or one check, or one test set) reads"),
    Limit("dataset_mb", "FTSPACE_MAX_DATASET_MB", 500, "MB", "size of a Hub dataset's files (checked before any "
          "download), and of the rows one run keeps"),
    Limit("model_gb", "FTSPACE_MAX_MODEL_GB", 20, "GB", "size of a Hub model's weights, checked before any download"),
    Limit("uploads", "FTSPACE_MAX_UPLOADS", 20, "files", "uploads kept per caller (the oldest are removed)"),
    Limit("uploads_mb", "FTSPACE_MAX_UPLOADS_MB", 300, "MB", "bytes of uploads kept per caller (the oldest are "
          "removed)"),
    Limit("chat_turns", "FTSPACE_MAX_CHAT_TURNS", 40, "messages", "messages of chat history sent with one question"),
    Limit("message_chars", "FTSPACE_MAX_MESSAGE_CHARS", 8000, "characters", "characters of one chat message or prompt"),
    Limit("model_slots", "FTSPACE_MAX_MODEL_SLOTS", 1, "slots", "chat/evaluation slots one caller may hold at once"),
    Limit("teacher_rows", "FTSPACE_MAX_TEACHER_ROWS", 500, "rows", "rows one dataset creation may write"),
    Limit("teacher_requests", "FTSPACE_MAX_TEACHER_REQUESTS", 1000, "requests", "teacher requests of one creation"),
    Limit("sweep_trials", "FTSPACE_MAX_SWEEP_TRIALS", 4, "trials", "trials of one sweep"),
    Limit("document_mb", "FTSPACE_MAX_DOCUMENT_MB", 20, "MB", "size of a document's text after decompression"),
    Limit("eval_rows", "FTSPACE_MAX_EVAL_ROWS", 500, "rows", "test rows one evaluation scores"),
    Limit("waiting", "FTSPACE_MAX_WAITING", 64, "requests", "requests waiting in the app's queue, everyone's together "
          "(Gradio's own default on ZeroGPU is 1: the next visitor would be told the queue is full)"),
)}


def shared() -> bool:
    """Limits apply where many callers share the app (a Space, or FTSPACE_MULTIUSER=1)."""
    return multi_user()


def limit(name: str) -> float | None:
    """The limit in force for `name`; None on a self-hosted single-user app (no limit)."""
    if not shared():
        return None
    item = LIMITS[name]
    raw = os.environ.get(item.env, "").strip()
    try:
        return float(raw) if raw else item.default
    except ValueError:
        return item.default


def rows_cap() -> int | None:
    """How many rows one run, check or test set reads on this app (None: all of them)."""
    bound = limit("rows")
    return int(bound) if bound is not None else None


def over(name: str, value: float) -> bool:
    bound = limit(name)
    return bound is not None and value > bound


def refusal(name: str, what: str, value=None) -> str:
    """One line: what was asked, the limit, and who can raise it."""
    item, bound = LIMITS[name], limit(name)
    asked = f" ({_fmt(value)} {item.unit})" if value is not None else ""
    return (f"{what}{asked} is over this app's limit of {_fmt(bound)} {item.unit} ({item.what}); the app's owner "
            f"can change it with {item.env}, or run ftspace yourself.")


def check(name: str, value: float, what: str | None = None) -> None:
    """Raise ConfigError with `refusal` when `value` is over the limit in force."""
    if over(name, value):
        raise ConfigError(refusal(name, what or name, value))


def _fmt(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def table() -> str:
    """The table of limits in docs/space.md (checked by a test against this module)."""
    lines = ["| Variable | Default | What it limits |", "|---|---|---|"]
    lines += [f"| `{i.env}` | {_fmt(i.default)} {i.unit} | {i.what} |" for i in LIMITS.values()]
    return "\n".join(lines)
