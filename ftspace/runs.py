"""The run store: one folder per run under `runs/` (or $FTSPACE_RUNS).

    runs/<id>/config.yaml     the resolved RunConfig
    runs/<id>/status.json     queued | running | stopping | completed | failed | interrupted | stopped (+ error;
                              `stopped`: a Hugging Face Jobs run whose job was cancelled; "job": where it trains)
    runs/<id>/events.jsonl    one JSON object per logged step, append-only
    runs/<id>/log.txt         the worker's stdout and stderr
    runs/<id>/checkpoints/    resumable Trainer checkpoints
    runs/<id>/adapter/        the PEFT adapter chat and publish use (the final one, or a chosen checkpoint's)
    runs/<id>/evaluations/    scorecards from `ftspace eval` / the Evaluate tab, one per checkpoint
    runs/<id>/tensorboard/    TensorBoard event files (the Trainer's own)
    runs/<id>/STOP            present when a stop was requested

The worker is a separate process started with its output going to log.txt (never a pipe that
nobody drains). A run whose worker died without saying so (SIGKILL, power loss, app restart) is
seen as `interrupted` the next time its status is read.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ftspace.config import RunConfig
from ftspace.env import runs_root
from ftspace.errors import RunError

ACTIVE = ("queued", "running", "stopping")
GONE = "the worker process ended unexpectedly"
FINISHED = ("completed", "failed", "stopped")  # only Resume (status queued) moves a run out of these
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


EVENTS_KEPT = 16  # runs whose parsed events the app keeps between polls
_events_seen: dict[Path, tuple[int, list[dict]]] = {}
_events_lock = threading.Lock()


def write_json_atomic(path: Path, data: dict):
    """Write whole or not at all. The temp name is unique per writer (process, thread and a random part):
    two threads sharing one temp file could rename each other's half-written file into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", Path(text).name.lower()).strip("-")[:24] or "run"


@dataclass
class Run:
    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    # --- files
    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def events_path(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def log_path(self) -> Path:
        return self.path / "log.txt"

    def config(self) -> RunConfig:
        return RunConfig.from_yaml(self.config_path)

    # --- status: read by anyone; every update is read-modify-write under a lock shared by the app's
    # threads, the worker and the CLI (flock on .status.lock), written atomically
    def read_status(self) -> dict:
        """The status as written; 'unknown' (with the reason) when there is none or it cannot be read,
        never a status made up to look like a real one."""
        try:
            return json.loads((self.path / "status.json").read_text())
        except FileNotFoundError:
            return {"status": "unknown", "error": "status.json is missing"}
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return {"status": "unknown", "error": f"status.json cannot be read ({e})", "unreadable": True}

    def status(self) -> dict:
        """The status as it is: a run whose worker is gone reads as interrupted (nothing is written: see
        `record_if_gone`), a running one asked to stop as stopping."""
        st = self.read_status()
        if st.get("status") == "queued" and (st.get("waiting") or (
                not (self.path / "worker.json").exists() and time.time() - st.get("updated", 0) < 30)):
            return st  # waiting in the app's queue, or being launched right now
        if st.get("job"):  # trains on Hugging Face Jobs: its follower (ftspace.targets.jobs_log) keeps this current
            stopping = st.get("status") == "running" and (self.path / "STOP").exists()
            return {**st, "status": "stopping"} if stopping else st
        if st.get("status") in ACTIVE and not self.worker_alive():
            st = self.read_status()  # read again: a worker that just finished has written its last status
            if st.get("status") in ACTIVE:
                st = {**st, "status": "interrupted", "error": st.get("error") or GONE}
        if st.get("status") == "running" and (self.path / "STOP").exists():
            st["status"] = "stopping"
        return st

    def record_if_gone(self) -> dict:
        """Write down what `status` sees: a run whose worker is gone becomes interrupted in status.json (only while
        it is still active when re-read under the lock, so a run that just completed stays completed). The app's
        queue does this for every run it looks at, and a resume before it starts; the status."""
        st = self.status()
        if st.get("status") == "interrupted" and self.read_status().get("status") in ACTIVE:
            return self.set_status(status="interrupted", error=st["error"], only_if_active=True)
        return st

    def worker_alive(self) -> bool:
        """The process that trains (a worker, or the app driving ZeroGPU calls) is there, and a ZeroGPU
        driver's lease (renewed before each call) has not run out: a visitor who closed the tab leaves
        no run `running` and holding the queue."""
        try:
            worker = json.loads((self.path / "worker.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return False
        if worker.get("lease_until") and time.time() > worker["lease_until"]:
            return False
        return _alive(worker.get("pid"), worker.get("started"))

    def set_status(self, only_if_active: bool = False, **fields) -> dict:
        """Merge `fields` into status.json, serialized with every other writer; the status written.

        A finished run (completed or failed) only changes status by being queued again (Resume); a
        status that cannot be read is not overwritten (that would drop its owner): RunError instead."""
        with self._status_lock():
            path = self.path / "status.json"
            current = self.read_status() if path.exists() else {}
            if current.get("unreadable"):
                raise RunError(f"Run {self.id}: {current['error']}: repair or delete {path.name}.")
            if only_if_active and current.get("status") not in ACTIVE:
                return current
            if current.get("status") in FINISHED and fields.get("status") not in (None, "queued", current["status"]):
                fields = {k: v for k, v in fields.items() if k not in ("status", "error")}
            current.update(fields, updated=time.time())
            write_json_atomic(path, current)
            return current

    @contextlib.contextmanager
    def _status_lock(self):
        with open(self.path / ".status.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # --- events
    def events(self, offset: int = 0) -> tuple[list[dict], int]:
        """Events appended since byte `offset`, and the new offset (the CLI's progress bar reads on from
        where it stopped; the app's polls go through `all_events`, which does the same per run)."""
        try:
            with open(self.events_path, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            return [], offset
        end = data.rfind(b"\n") + 1  # a half-written last line waits for the next read
        events = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
        return events, offset + end

    def all_events(self) -> list[dict]:
        """Every event so far. Each poll of the app reads only what was appended since the last one: the
        parsed events of recently polled runs are kept (a few runs, one small dict per logged step)."""
        with _events_lock:
            offset, known = _events_seen.pop(self.events_path, (0, []))
            try:
                if self.events_path.stat().st_size < offset:  # the file was replaced: start again
                    offset, known = 0, []
            except FileNotFoundError:
                return []
            new, offset = self.events(offset)
            known = known + new
            _events_seen[self.events_path] = (offset, known)
            while len(_events_seen) > EVENTS_KEPT:
                _events_seen.pop(next(iter(_events_seen)))  # the least recently polled
            return known  # never changed in place: the next poll builds a new list

    def checkpoints(self) -> list[Path]:
        """The complete checkpoints, oldest first. The Trainer writes trainer_state.json last, so a
        checkpoint whose state file is missing or cut short was interrupted mid-write and is passed over
        (at least two are kept, so the one before it is still there)."""
        def complete(path: Path) -> bool:
            try:
                json.loads((path / "trainer_state.json").read_text())
                return True
            except (OSError, ValueError):
                return False

        found = [p for p in self.checkpoints_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
        return [p for p in sorted(found, key=lambda p: int(p.name.split("-")[1])) if complete(p)]

    def last_checkpoint(self) -> Path | None:
        """The newest complete checkpoint."""
        found = self.checkpoints()
        return found[-1] if found else None

    def checkpoint(self, step: int) -> Path:
        """The complete checkpoint saved at `step` (RunError naming the ones there are)."""
        for path in self.checkpoints():
            if path.name == f"checkpoint-{step}":
                return path
        kept = ", ".join(p.name.split("-")[1] for p in self.checkpoints()) or "none"
        raise RunError(f"Run {self.id} has no checkpoint at step {step}: the kept ones are at steps {kept}.")

    # --- control
    def request_stop(self):
        st = self.status()
        if st["status"] not in ACTIVE:
            raise RunError(f"Run {self.id} is {st['status']}, not running: nothing to stop.")
        if st.get("waiting"):  # never started: take it out of the queue, resumable later
            self.set_status(status="interrupted", waiting=False, error="cancelled while waiting in the queue")
            return
        (self.path / "STOP").touch()  # the worker sees it at the end of the current step

    def wait(self, timeout: float | None = None, poll: float = 0.5) -> dict:
        deadline = None if timeout is None else time.time() + timeout
        while True:
            st = self.status()
            if st["status"] not in ACTIVE:
                return st
            if deadline is not None and time.time() > deadline:
                return st
            time.sleep(poll)

    def published_scorecard(self, status: dict | None = None) -> dict | None:
        """The saved scorecard of the adapter the run publishes (its chosen checkpoint's, else the final adapter's):
        what the Runs tab and the model card show; None when it was not evaluated."""
        label = (status if status is not None else self.read_status()).get("adapter_checkpoint") or "final"
        try:
            card = json.loads((self.path / "evaluations" / f"{label}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return card if isinstance(card, dict) else None

    def score(self) -> dict | None:
        """The published scorecard in short: {"task_gain", "metric", "general_change"}; None when not evaluated."""
        try:
            card = self.published_scorecard()
            return card and {"task_gain": card["task_gain"], "metric": card["primary_metric"],
                             "general_change": card["forgetting"]["change"]}
        except (KeyError, TypeError):
            return None

    def summary(self) -> dict:
        st = self.status()
        try:
            cfg = self.config()
            settings = {"model_name": cfg.model_name, "dataset": cfg.dataset, "lora_r": cfg.lora_r,
                        "learning_rate": cfg.learning_rate, "max_steps": cfg.max_steps, "method": cfg.method}
        except Exception:  # a damaged config must not hide the run from the list
            settings = {}
        return {"id": self.id, "status": st.get("status"), "step": st.get("step", 0),
                "method": settings.get("method"), "seconds": training_seconds(st), "score": self.score(),
                "total_steps": st.get("total_steps"), "train_loss": st.get("train_loss"),
                "eval_loss": st.get("eval_loss"), "created": st.get("created"), "error": st.get("error"),
                "job": (st.get("job") or {}).get("id"), "jobs_flavor": (st.get("job") or {}).get("flavor"),
                **settings}


def duration_shown(seconds: float) -> str:
    """A duration as the app, the CLI and the card show it.

    >>> duration_shown(42.4), duration_shown(107.2), duration_shown(7322)
    ('42 s', '1 min 47 s', '2 h 2 min')
    """
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def training_seconds(st: dict) -> float | None:
    """How long a run trained, from its status: the trainer's own runtime, else its worker's start to its end.

    >>> training_seconds({"train_runtime_s": 75.2}), training_seconds({"started": 10.0, "finished": 40.5})
    (75.2, 30.5)
    >>> training_seconds({"started": 10.0}) is None
    True
    """
    seconds = st.get("train_runtime_s")
    if isinstance(seconds, (int, float)):
        return seconds
    if isinstance(st.get("finished"), (int, float)) and isinstance(st.get("started"), (int, float)):
        return st["finished"] - st["started"]
    return None


def _alive(pid, started) -> bool:
    if not pid:
        return False
    try:
        import psutil

        proc = psutil.Process(pid)
        if started and abs(proc.create_time() - started) > 1:
            return False  # the pid was reused by another process
        return proc.status() != psutil.STATUS_ZOMBIE
    except Exception:
        return False


def measured_step_seconds(cfg: RunConfig, owner: str | None = None) -> float | None:
    """Seconds per step measured by the newest run with the same model, method and batch shape (GRPO: also the
    replies it writes a step), if any; only `owner`'s runs when given (on a shared app a visitor's estimate reads no
    one else's runs)."""
    def shape(c: RunConfig):
        replies = (c.num_generations, c.max_completion_length) if c.method == "grpo" else ()
        return (c.model_name, c.method, c.per_device_train_batch_size, c.gradient_accumulation_steps, c.max_seq_length,
                *replies)

    for run in list_runs():
        if owner is not None and run.read_status().get("owner") != owner:
            continue
        try:
            other = run.config()
        except Exception:  # a damaged config says nothing about speed
            continue
        if shape(other) != shape(cfg):
            continue
        measured = step_seconds(run.events()[0])
        if measured is not None:
            return measured
    return None


def step_seconds(events: list[dict]) -> float | None:
    """Seconds per training step, from the newest stretch of one process's clock with two logged steps: each
    process (a worker, a resumed worker, every ZeroGPU call) restarts `elapsed_s` at its first step, so steps
    logged by different processes are never subtracted from each other. None when nothing is measured.

    >>> step_seconds([{"step": s, "loss": 1, "elapsed_s": 2.0 * s} for s in (1, 2, 3)])
    2.0
    >>> step_seconds([{"step": 1, "loss": 1, "elapsed_s": 9.0, "time": 109.0},  # a first call, 3 s a step
    ...               {"step": 2, "loss": 1, "elapsed_s": 12.0, "time": 112.0},
    ...               {"step": 3, "loss": 1, "elapsed_s": 1.0, "time": 150.0},  # the next call's clock
    ...               {"step": 4, "loss": 1, "elapsed_s": 2.5, "time": 151.5}])
    1.5
    """
    steps = [e for e in events if "loss" in e and "elapsed_s" in e]
    stretches: list[tuple[float, int]] = [(0.0, 0)]  # (seconds, steps) per clock
    for a, b in zip(steps, steps[1:]):
        same_clock = b["elapsed_s"] > a["elapsed_s"] and (
            "time" not in a or "time" not in b or abs((b["time"] - b["elapsed_s"]) - (a["time"] - a["elapsed_s"])) < 1)
        if not same_clock or b["step"] <= a["step"]:
            stretches.append((0.0, 0))  # a new clock starts at b
            continue
        seconds, n = stretches[-1]
        stretches[-1] = (seconds + b["elapsed_s"] - a["elapsed_s"], n + b["step"] - a["step"])
    measured = [seconds / n for seconds, n in stretches if n]
    return measured[-1] if measured else None


def get(run_id: str) -> Run:
    if not RUN_ID.match(run_id or ""):
        raise RunError(f"{run_id!r} is not a run id: see `ftspace runs`.")
    path = runs_root() / run_id
    if not (path / "config.yaml").exists():
        raise RunError(f"No run '{run_id}' in {runs_root()}: see `ftspace runs`.")
    return Run(path)


def find(ref: str) -> Run:
    """A run by id or by its folder path."""
    path = Path(ref)
    if path.is_dir() and (path / "config.yaml").exists():
        return Run(path.resolve())
    return get(ref)


def list_runs() -> list[Run]:
    """All runs, newest first. Cheap: reads folder names and status files only."""
    root = runs_root()
    if not root.exists():
        return []
    return [Run(p) for p in sorted(root.iterdir(), reverse=True) if (p / "config.yaml").exists()]


def create(cfg: RunConfig, owner: str = "") -> Run:
    root = runs_root()
    root.mkdir(parents=True, exist_ok=True)
    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{_slug(cfg.model_name)}-{secrets.token_hex(2)}"
    path = root / run_id
    path.mkdir()
    cfg.to_yaml()  # validates serialisability before anything is written
    (path / "config.yaml").write_text(cfg.to_yaml())
    run = Run(path)
    run.set_status(status="queued", created=time.time(), step=0, owner=owner)
    return run


def delete(run: Run) -> None:
    """Remove a run and everything in its folder (checkpoints, adapter, evaluations, exports). Refused while it is
    queued, training or stopping: one line saying to stop it first."""
    st = run.record_if_gone()
    if st.get("status") in ACTIVE:
        raise RunError(f"Run {run.id} is {st['status']}: stop it first, then delete it.")
    shutil.rmtree(run.path)


def resume_refusal(run_id: str, st: dict) -> str | None:
    """Why a run with status `st` cannot be resumed, in one line; None where Resume can act on it (the Train tab
    enables its button by this; `prepare_resume` also looks for the checkpoint to go on from).

    >>> resume_refusal("r", {"status": "stopped", "step": 4}), resume_refusal("r", {"status": "running"})
    (None, 'Run r is already running.')
    >>> resume_refusal("r", {"status": "completed", "stopped_early": True}) is None
    True
    """
    if st.get("status") in ACTIVE:
        return f"Run {run_id} is already {st['status']}."
    if st.get("status") == "completed" and not st.get("stopped_early"):
        return f"Run {run_id} already completed all its steps: start a new run to train more."
    return None


def prepare_resume(run: Run):
    """Refuse a run that cannot be resumed; clear an old stop request from one that can."""
    st = run.record_if_gone()
    if (refusal := resume_refusal(run.id, st)) is not None:
        raise RunError(refusal)
    if run.last_checkpoint() is None and st.get("step", 0) > 0 and not st.get("job"):  # a job's are on the Hub
        raise RunError(f"Run {run.id} has no complete checkpoint to resume from: start it again.")
    (run.path / "STOP").unlink(missing_ok=True)
