"""The entry point a Hugging Face Job runs: `python -m ftspace.engine.job REPO_ID [--resume]`.

REPO_ID is the run's private repo (ftspace.targets.jobs pushed run/config.yaml, any local data under run/, and, off a
Space, this project's code under code/). This process makes an ordinary run folder from it, starts the
ordinary worker on it (`ftspace.engine.worker`, on several GPUs through `torchrun`), and reports through its
own output, which is the job's log: the worker's lines as they are, each event as `[ftspace event] {json}` and
each change of status as `[ftspace status] {json}`, which the app turns back into events.jsonl and status.json.
Each new checkpoint is pushed to the repo (checkpoints/), so a cancelled or timed-out job can be resumed by
another; at the end the adapter goes to adapter/. The token is the job's HF_TOKEN secret (the user's own).
Exit status: 0 completed, 1 anything else.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

EVENT, STATUS = "[ftspace event] ", "[ftspace status] "
CHECKPOINTS_KEPT = 2  # on the repo: the newest, and the one before in case the newest was cut short
QUIET_FIELDS = ("updated", "pid", "owner", "created", "started", "waiting", "queued_at", "resume")


_OUTPUT = threading.Lock()


def emit(line: str):
    """One whole line of the job's log. The app reads events and statuses back from lines that start with their
    prefix, so a line is written at once, never between the halves of another (the worker's lines come through
    `relay`: a process of its own writing to the same pipe could split one)."""
    with _OUTPUT:
        sys.stdout.write(line.rstrip("\n") + "\n")
        sys.stdout.flush()


def relay(stream):
    """The worker's output, a whole line at a time, into the job's log."""
    for raw in iter(stream.readline, b""):
        emit(raw.decode("utf-8", "replace"))


def say(message: str):
    emit(f"[ftspace job {time.strftime('%H:%M:%S')}] {message}")


def make_run(repo_id: str, work: Path, resume: bool):
    """The run folder the worker trains in, from the repo (and its last checkpoint when resuming)."""
    from huggingface_hub import HfApi, snapshot_download

    from ftspace.config import RunConfig
    from ftspace.runs import Run

    api = HfApi()
    patterns = ["run/**"]
    kept = sorted((p.split("/")[1] for p in api.list_repo_files(repo_id) if p.startswith("checkpoints/checkpoint-")),
                  key=lambda name: int(name.split("-")[1]))
    if resume and kept:
        patterns.append(f"checkpoints/{kept[-1]}/**")
    local = Path(snapshot_download(repo_id, allow_patterns=patterns, local_dir=work / "repo"))
    cfg = RunConfig.from_yaml(local / "run" / "config.yaml")
    fix = {name: str(local / getattr(cfg, name)) for name in ("dataset", "test_dataset", "model_name")
           if getattr(cfg, name).startswith("run/")}
    run = Run(work / "runs" / repo_id.split("/")[1].removeprefix("ftspace-"))
    run.path.mkdir(parents=True, exist_ok=True)
    run.config_path.write_text(cfg.replace(**fix).to_yaml())
    if resume and kept:
        run.checkpoints_dir.mkdir(exist_ok=True)
        os.replace(local / "checkpoints" / kept[-1], run.checkpoints_dir / kept[-1])
        say(f"resuming from {kept[-1]} (pushed by an earlier job)")
    elif resume:
        say("no checkpoint was pushed yet: starting from step 0")
    run.set_status(status="queued", created=time.time(), step=0)
    return run, (kept[-1] if resume and kept else None)


def worker_command(run, resume: bool) -> list[str]:
    """The ordinary worker; with several GPUs (a multi-GPU flavor), one process per GPU through torchrun."""
    from ftspace.engine import distributed

    count = distributed.processes(run.config().num_processes)
    if count > 1:
        say(f"training data-parallel in {count} processes (torchrun)")
    return distributed.command(str(run.path), resume, count)


class Reporter:
    """Prints new events and status changes, and pushes each new complete checkpoint."""

    def __init__(self, run, api, repo_id: str):
        self.run, self.api, self.repo_id = run, api, repo_id
        self.offset, self.last_status, self.pushed = 0, None, set()

    def tick(self):
        events, self.offset = self.run.events(self.offset)
        for event in events:
            emit(EVENT + json.dumps(event))
        st = {k: v for k, v in self.run.read_status().items() if k not in QUIET_FIELDS}
        if st != self.last_status:
            emit(STATUS + json.dumps(st))
            self.last_status = st
        newest = self.run.last_checkpoint()
        if newest is not None and newest.name not in self.pushed:
            self.push_checkpoint(newest)

    def push_checkpoint(self, path: Path):
        from huggingface_hub import CommitOperationDelete

        try:
            on_repo = {p.split("/")[1] for p in self.api.list_repo_files(self.repo_id) if p.startswith("checkpoints/")}
            old = sorted(on_repo | {path.name}, key=lambda n: int(n.split("-")[1]))[:-CHECKPOINTS_KEPT]
            self.api.upload_folder(repo_id=self.repo_id, folder_path=str(path), path_in_repo=f"checkpoints/{path.name}",
                                   commit_message=path.name)
            if old:
                self.api.create_commit(self.repo_id, [CommitOperationDelete(f"checkpoints/{name}/") for name in old],
                                       commit_message="older checkpoints")
            self.pushed.add(path.name)
            say(f"pushed {path.name} to {self.repo_id}")
        except Exception as e:  # the run goes on; the next checkpoint tries again
            say(f"could not push {path.name} ({type(e).__name__}: {str(e)[:200]})")
            self.pushed.add(path.name)


def main(argv=None) -> int:
    import argparse

    from huggingface_hub import HfApi

    parser = argparse.ArgumentParser(prog="ftspace.engine.job")
    parser.add_argument("repo_id")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    import ftspace

    say(f"ftspace code from {Path(ftspace.__file__).resolve().parent}; run repo {args.repo_id}")
    work = Path(os.environ.get("FTSPACE_JOB_DIR") or tempfile.mkdtemp(prefix="ftspace-job-"))
    os.environ["FTSPACE_RUNS"] = str(work / "runs")
    run, resumed_from = make_run(args.repo_id, work, args.resume)
    api = HfApi()
    reporter = Reporter(run, api, args.repo_id)
    reporter.pushed.add(resumed_from)  # on the Hub already
    code_root = str(Path(ftspace.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [code_root, os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen(worker_command(run, args.resume), env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    relaying = threading.Thread(target=relay, args=(proc.stdout,), daemon=True)
    relaying.start()
    stop = threading.Event()

    def report():
        while not stop.wait(1.0):
            reporter.tick()

    thread = threading.Thread(target=report, daemon=True)
    thread.start()
    code = proc.wait()
    relaying.join(timeout=30)  # the worker's last lines (torchrun's children may hold the pipe a little longer)
    stop.set()
    thread.join()
    st = run.read_status()
    if st.get("status") == "completed" and code == 0:
        reporter.tick()
        api.upload_folder(repo_id=args.repo_id, folder_path=str(run.adapter_dir), path_in_repo="adapter",
                          commit_message="adapter")
        say(f"adapter pushed to {args.repo_id}/adapter")
        return 0
    if st.get("status") not in ("completed", "failed"):
        run.set_status(status="failed", error=st.get("error") or f"the worker ended with exit status {code}")
    reporter.tick()
    return 1


if __name__ == "__main__":
    sys.exit(main())
