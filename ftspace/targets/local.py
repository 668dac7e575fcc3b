"""Runs that train on this machine: a worker process per run (`python -m ftspace.engine.worker`, or torchrun for
several processes), its output going to the run's log file. The run store (ftspace.runs) keeps what the worker
writes; the queue (ftspace.targets.queue) decides when a run starts; this starts it.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import psutil

from ftspace import runs
from ftspace.access import worker_env
from ftspace.config import RunConfig
from ftspace.data import resolve, scan
from ftspace.engine import distributed


def launch(run: runs.Run, resume: bool = False) -> subprocess.Popen:
    """Start the worker process for a run; its output goes to the run's log file."""
    env = worker_env(dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false"))
    project_root = str(Path(__file__).resolve().parent.parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [project_root, env.get("PYTHONPATH")]))
    count = distributed.processes(run.config().num_processes)
    args = distributed.command(str(run.path), resume, count)  # several processes: torchrun (data-parallel)
    run.set_status(status="queued", error=None, waiting=False)
    (run.path / "worker.json").unlink(missing_ok=True)
    with open(run.log_path, "ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    # Only the launcher writes worker.json. status.json has many writers (this launcher, the worker, the
    # app's Stop, the scheduler); each change goes through Run.set_status, under the run's lock.
    try:
        started = psutil.Process(proc.pid).create_time()
    except psutil.NoSuchProcess:
        started = None
    runs.write_json_atomic(run.path / "worker.json", {"pid": proc.pid, "started": started})
    # Reap the worker when it exits, so a long-lived app does not collect zombie processes.
    threading.Thread(target=proc.wait, daemon=True, name=f"reap-{run.id}").start()
    return proc


def preflight(cfg: RunConfig):
    """Fail before a run exists when a local dataset cannot be used (Hub data is checked by the worker)."""
    if resolve(cfg.dataset)[0] == "file":  # streamed: a large file is read through, not held
        scan(cfg.dataset, dataset_format=cfg.dataset_format, prompt_column=cfg.prompt_column,
             response_column=cfg.response_column, method=cfg.method)


def start(cfg: RunConfig) -> tuple[runs.Run, subprocess.Popen]:
    preflight(cfg)
    run = runs.create(cfg)
    return run, launch(run)


def resume(run: runs.Run) -> subprocess.Popen:
    runs.prepare_resume(run)
    return launch(run, resume=True)
