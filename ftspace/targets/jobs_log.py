"""Following a Hugging Face Jobs run from this process:

    attach(run, token)    follow the job on a background thread: its log into log.txt, its events into events.jsonl,
                          its status into status.json; when it ends the adapter is pulled into runs/<id>/adapter.
                          Idempotent: a restarted app attaches again and reads on where it stopped
    refresh(run, token)   catch up once without following (`ftspace status`)

Only allow-listed status fields (STATUS_FIELDS) and checkpoint names are taken from the job's log: it is text a job
wrote, shown to the visitor whose job it is.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

from ftspace import errors, runs
from ftspace.engine.job import EVENT, STATUS  # the lines of the job's log that carry data back
from ftspace.errors import RunError
from ftspace.targets.jobs import TERMINAL, cancel, hub_api, hub_error, is_job_run, log_line


_followers: dict[str, threading.Thread] = {}
_followers_lock = threading.Lock()


@contextlib.contextmanager
def _following(run: runs.Run):
    """True while this process is the one following the run's job (one follower across processes: an app and a
    CLI on one machine must not both append the job's log)."""
    with open(run.path / ".follow.lock", "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def attach(run: runs.Run, token: str | None) -> threading.Thread | None:
    """Follow a job run on a background thread of this process, unless one already does (None: nothing to
    follow, or no token to follow it with). Another process following it already: the thread ends at once and
    the run's files show that one's progress."""
    st = run.read_status()
    if not is_job_run(st) or st.get("status") not in runs.ACTIVE or not token:
        return None
    with _followers_lock:
        thread = _followers.get(run.id)
        if thread is not None and thread.is_alive():
            return thread
        thread = threading.Thread(target=_follow_if_free, args=(run, token), daemon=True, name=f"ftspace-job-{run.id}")
        _followers[run.id] = thread
        thread.start()
        return thread


def _follow_if_free(run: runs.Run, token: str):
    with _following(run) as mine:
        if mine:
            follow(run, token)


def follow(run: runs.Run, token: str, poll: float = 5.0) -> dict:
    """Read the job's log as it comes until the job ends, then conclude the run; the final status."""
    api = hub_api(token)
    watcher = threading.Event()
    threading.Thread(target=_watch_stop, args=(run, api, watcher), daemon=True).start()
    try:
        while True:
            job = run.read_status()["job"]
            try:
                _read_log(run, api, follow=True)
                info = api.inspect_job(job_id=job["id"], namespace=job["namespace"])
            except Exception as e:
                status = getattr(getattr(e, "response", None), "status_code", None)
                if status in (401, 403, 404):
                    log_line(run, f"{hub_error(e, 'following the job')} The job itself goes on; open the run again "
                              "to follow it.")
                    return run.read_status()
                log_line(run, f"lost the job's log ({type(e).__name__}); reading on in {poll:.0f} s")
                time.sleep(poll)
                continue
            run.set_status(job_stage=info.status.stage)
            if info.status.stage in TERMINAL:
                return conclude(run, api, info)
            time.sleep(poll)
    finally:
        watcher.set()


def _watch_stop(run: runs.Run, api, done: threading.Event):
    """A STOP file (the app's Stop, an agent's stop_run) cancels the job."""
    while not done.wait(1.0):
        if (run.path / "STOP").exists() and not run.read_status().get("cancel_requested"):
            try:
                cancel(run, api)
            except Exception as e:
                log_line(run, f"could not cancel the job ({type(e).__name__}); retrying")


def _read_log(run: runs.Run, api, follow: bool):
    """The job's log from where this run's files stopped (`job.lines`, the lines already taken) on."""
    job = run.read_status()["job"]
    for number, line in enumerate(api.fetch_job_logs(job_id=job["id"], namespace=job["namespace"], follow=follow), 1):
        if number > job["lines"]:
            _take(run, line, number)


# What a job's status line may set in the run's status, and how each is checked: anything else in the line is
# dropped (a job runs code from the visitor's own repo, so its log may say anything: "owner", a path ...).
STATUS_FIELDS = {"status": str, "step": int, "total_steps": int, "eta_s": float, "train_loss": float,
                 "eval_loss": float, "error": str, "adapter_checkpoint": str, "compute_dtype": str, "device": str,
                 "weights_dtype": str, "processes": int, "trainer_class": str, "stopped_early": bool, "reward": float,
                 "hardware": str, "versions": str}
CHECKPOINT_NAME = re.compile(r"^checkpoint-\d{1,9}$")


def allowed_status(fields) -> dict:
    """The fields of a job's status line that the run may take, each of its type; checkpoint names as
    `checkpoint-N`; text escaped to one line (a newline cannot forge another status line).

    >>> allowed_status({"step": 3, "owner": "user:someone", "adapter_checkpoint": "../../x", "status": "running"})
    {'step': 3, 'status': 'running'}
    """
    out = {}
    for name, value in (fields.items() if isinstance(fields, dict) else ()):
        kind = STATUS_FIELDS.get(name)
        if kind is None or value is None:
            continue
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
        elif kind is int and isinstance(value, int) and not isinstance(value, bool):
            out[name] = value
        elif kind is bool and isinstance(value, bool):
            out[name] = value
        elif kind is str and isinstance(value, str):
            if name == "adapter_checkpoint" and not CHECKPOINT_NAME.match(value):
                continue
            if name == "status" and value not in runs.ACTIVE + runs.FINISHED + ("interrupted",):
                continue
            out[name] = errors.escape(value, 500)
    return out


def _event(text: str) -> dict | None:
    """A job's event line: an object of numbers and short strings, else nothing."""
    try:
        event = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(event, dict):
        return None
    out = {errors.escape(k, 40): (v if isinstance(v, (int, float, bool)) or v is None else errors.escape(str(v), 200))
           for k, v in list(event.items())[:40] if k != "samples"}
    if "samples" in event:  # GRPO's replies with their rewards: a few rows of short text and numbers
        out["samples"] = _samples(event["samples"])
    return out


def _samples(rows) -> list[dict]:
    """A job's sampled replies, as the Train tab shows them: at most 4 rows of text and per-reward numbers."""
    out = []
    for row in rows[:4] if isinstance(rows, list) else []:
        if not isinstance(row, dict):
            continue
        scores = row.get("rewards") if isinstance(row.get("rewards"), dict) else {}
        out.append({**{k: errors.escape(str(row.get(k, "")), 500) for k in ("prompt", "completion", "answer")},
                    "rewards": {errors.escape(str(k), 40): float(v) for k, v in list(scores.items())[:12]
                                if isinstance(v, (int, float)) and not isinstance(v, bool)}})
    return out


def _take(run: runs.Run, line: str, number: int):
    """One line of the job's log: an event, a status, or a line for log.txt."""
    st = run.read_status()
    fields = {}
    if line.startswith(EVENT):
        event = _event(line[len(EVENT):])
        if event is not None:
            with open(run.events_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(event) + "\n")
    elif line.startswith(STATUS):
        try:
            fields = allowed_status(json.loads(line[len(STATUS):]))
        except json.JSONDecodeError:
            fields = {}
        job_status = fields.pop("status", None)
        fields = {"job_status": job_status, **fields}
        if job_status in ("running", "stopping") and st.get("status") == "queued":
            fields["status"] = "running"
    else:
        with open(run.log_path, "a", encoding="utf-8") as fh:
            fh.write(line.rstrip("\n") + "\n")
    run.set_status(**fields, job={**st["job"], "lines": number})


def conclude(run: runs.Run, api, info) -> dict:
    """The job has ended: completed (adapter pulled), stopped (cancelled) or failed (with its reason)."""
    st = run.read_status()
    stage, message = info.status.stage, (info.status.message or "").strip()
    step, job = st.get("step", 0), st["job"]
    if stage == "COMPLETED":  # the job exits 0 only once its adapter is pushed
        try:
            pull_adapter(run, api, job["repo"])
        except Exception as e:
            return run.set_status(status="failed", error=f"the job completed but its adapter could not be pulled from "
                                                         f"{job['repo']} ({type(e).__name__}): press Resume to try again")
        log_line(run, f"job {info.id} completed; adapter pulled from {job['repo']} into {run.adapter_dir}")
        return run.set_status(status="completed", finished=time.time())
    if stage == "CANCELED":
        log_line(run, f"job {info.id} cancelled at step {step}")
        return run.set_status(status="stopped", error=f"stopped: the job was cancelled at step {step}; Resume "
                                                      "continues on a new job from the last checkpoint it pushed")
    reason = st.get("error") if st.get("job_status") == "failed" else None
    low = message.lower()
    if reason:
        pass
    elif "timeout" in low or "timed out" in low:
        reason = (f"the job reached its time limit ({run.config().jobs_timeout_minutes} min) at step {step}: Resume "
                  "continues on a new job from the last checkpoint it pushed, or raise jobs_timeout_minutes")
    elif "out of memory" in low or "oom" in re.findall(r"[a-z]+", low):
        reason = (f"out of memory on {job['flavor']} ({message}): pick a flavor with more memory, lower "
                  "per_device_train_batch_size or max_seq_length, or set load_in_4bit: true")
    else:
        reason = f"the job failed: {message or stage.lower()} (see the log)"
    log_line(run, f"job {info.id}: {stage} {message}".rstrip())
    return run.set_status(status="failed", error=reason.replace("\n", " "))


def pull_adapter(run: runs.Run, api, repo_id: str):
    """The adapter the job pushed, into runs/<id>/adapter (written beside, then moved into place whole)."""
    with tempfile.TemporaryDirectory(dir=run.path) as tmp:
        api.snapshot_download(repo_id, allow_patterns=["adapter/*"], local_dir=tmp)
        config_path = Path(tmp) / "adapter" / "adapter_config.json"
        if not config_path.exists():
            raise RunError(f"{repo_id} has no adapter/adapter_config.json")
        # The repo is the visitor's own and editable, and the job names its base by the job machine's own path:
        # the adapter is set on the base model this run's config trained (never whatever the repo names).
        adapter_config = json.loads(config_path.read_text())
        adapter_config["base_model_name_or_path"] = run.config().model_name
        config_path.write_text(json.dumps(adapter_config, indent=2))
        shutil.rmtree(run.adapter_dir, ignore_errors=True)
        os.replace(Path(tmp) / "adapter", run.adapter_dir)


def refresh(run: runs.Run, token: str | None) -> dict:
    """Catch up once (log so far, the job's stage; concluded when it has ended), without following."""
    st = run.read_status()
    if not is_job_run(st) or st.get("status") not in runs.ACTIVE or not token:
        return st
    with _following(run) as mine:
        return _refresh(run, token) if mine else st


def _refresh(run: runs.Run, token: str) -> dict:
    api, job = hub_api(token), run.read_status()["job"]
    try:
        info = api.inspect_job(job_id=job["id"], namespace=job["namespace"])
        if info.status.stage in TERMINAL:  # (the log of a running job streams on for as long as it runs)
            _read_log(run, api, follow=False)
    except Exception as e:
        log_line(run, f"could not reach the job ({type(e).__name__}): its last known status is shown")
        return run.read_status()
    run.set_status(job_stage=info.status.stage)
    return conclude(run, api, info) if info.status.stage in TERMINAL else run.read_status()
