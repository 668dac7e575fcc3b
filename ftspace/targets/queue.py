"""One training job at a time per GPU (or per CPU machine), in submission order.

The app and the CLI both submit runs here instead of launching workers directly. Waiting runs are
`queued` with `waiting: true` in their status, so they survive an app restart and are picked up
again. Whoever calls `kick()` (the app's background thread, a waiting CLI) starts the next waiting
run when nothing is training; a lock file in the runs folder makes that one decision at a time
across processes, so an app and a CLI on one machine never train two runs at once.

On a shared app the run is prepared (model and data downloaded with the visitor's token, tokenized)
inside the visitor's request before it is queued: the worker that trains it has no credentials. On a
ZeroGPU Space nothing starts a run in the background: the owner's own event `claim`s it when its turn
comes and drives its GPU calls (ftspace.targets.zerogpu.drive), so they are billed to that visitor.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
import time

from ftspace import env, offload, runs, targets
from ftspace.targets import zerogpu
from ftspace.targets import local
from ftspace.config import RunConfig


class Scheduler:
    def __init__(self, slots: int = 1, poll: float = 1.0, before_launch=None, on_finished=None):
        """`before_launch()` runs before a worker starts on this machine (the app: chat models give back the GPU);
        `on_finished(run)` runs on the background loop's thread for each run that completed since its last look
        (the app: the run's model starts loading for chat)."""
        self.slots, self.poll = slots, poll
        self.before_launch, self.on_finished = before_launch, on_finished
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # --- queue
    def submit(self, cfg: RunConfig, owner: str = "", token: str | None = None) -> runs.Run:
        """Queue a run. `token` is the caller's own (ftspace.access.hub_token), used only here and now (and, for
        a run on Hugging Face Jobs, which is not queued here, as the job's own credentials and to follow it)."""
        if targets.target_for(cfg) == "jobs":  # not queued here: its job starts at once, and is followed
            from ftspace.targets import jobs

            run = jobs.start(cfg, token, owner=owner)
            targets.follow(run, targets.Caller(owner, token))
            return run
        local.preflight(cfg)  # (the caller's access to its sources was checked by ftspace.targets.admit)
        run = runs.create(cfg, owner=owner)
        if env.multi_user() and not env.on_zerogpu():
            try:
                offload.call("ftspace.engine.prepare:prepare_in_place", log_path=run.log_path, run_dir=str(run.path),
                             token=token)
            except Exception as e:
                run.set_status(status="failed", error=str(e))
                raise
        run.set_status(status="queued", waiting=True, queued_at=time.time())
        if env.on_zerogpu():
            self.hold_place(run)  # until the owner's train_on_gpu event takes over
        self.kick()
        return run

    def resubmit(self, run: runs.Run, token: str | None = None) -> runs.Run:
        """Queue an interrupted or stopped run to continue from its last checkpoint (a run on Hugging Face Jobs:
        on a new job, with the caller's `token`)."""
        if targets.target_for(run) == "jobs":
            from ftspace.targets import jobs

            jobs.resume(run, token)
            targets.follow(run, targets.Caller(run.read_status().get("owner", ""), token))
            return run
        runs.prepare_resume(run)
        run.set_status(status="queued", waiting=True, resume=True, error=None, queued_at=time.time())
        if env.on_zerogpu():
            self.hold_place(run)
        self.kick()
        return run

    def stop(self, run: runs.Run, token: str | None = None):
        """Stop a run: after its current step, or, on Hugging Face Jobs, by cancelling its job (with the caller's
        `token`; without one, a follower of the job in this process cancels it)."""
        if targets.target_for(run) == "jobs" and token:
            from ftspace.targets import jobs

            jobs.stop(run, token)
            targets.follow(run, targets.Caller(run.read_status().get("owner", ""), token))
        else:
            run.request_stop()

    def waiting(self) -> list[runs.Run]:
        """Waiting runs, oldest first. On ZeroGPU a run waits only while its owner's page does (see
        `hold_place`): one whose page went away leaves the queue, resumable, instead of blocking it."""
        queued, now = [], time.time()
        for run in runs.list_runs():
            st = run.read_status()
            if st.get("waiting") and st.get("status") == "queued":
                if st.get("waiting_until") is not None and st["waiting_until"] < now:
                    run.set_status(status="interrupted", waiting=False, error=(
                        "left the queue when its page was closed: press Resume to queue it again"))
                    continue
                queued.append((st.get("queued_at", st.get("updated", 0)), run))
        return [run for _, run in sorted(queued, key=lambda item: item[0])]

    def position(self, run: runs.Run) -> int | None:
        """1 for the next run to start; None when the run is not waiting."""
        ids = [r.id for r in self.waiting()]
        return ids.index(run.id) + 1 if run.id in ids else None

    def active(self) -> list[runs.Run]:
        """Runs that hold the slot: training, stopping, or launched and not yet running."""
        active = []
        for run in runs.list_runs():
            st = run.status()
            if st.get("job"):  # trains on Hugging Face Jobs, not on this machine (targets.target_for)
                continue
            if st["status"] in ("running", "stopping") or (st["status"] == "queued" and not st.get("waiting")):
                active.append(run)
        return active

    def hold_place(self, run: runs.Run, seconds: float = 60):
        """ZeroGPU: the owner's page is still waiting for this run's turn (renewed while it waits)."""
        run.set_status(waiting_until=time.time() + seconds)

    def claim(self, run: runs.Run) -> int:
        """ZeroGPU: take the slot for this waiting run if it is next and a slot is free (0), else its
        place in the queue. The caller then drives it (ftspace.targets.zerogpu.drive) from the owner's event."""
        with self._lock, _machine_lock():
            position = self.position(run)
            if position is None:
                raise runs.RunError(f"Run {run.id} is not waiting to train.")
            if position > max(0, self.slots - len(self.active())):
                return position
            run.set_status(waiting=False, status="running", error=None, waiting_until=None)
            zerogpu.lease(run, 60)  # until the driver takes over
            return 0

    def kick(self):
        """Start waiting runs while a slot is free (checking liveness only when something waits).
        On ZeroGPU nothing is started here: a run's owner drives it (see `claim`)."""
        if env.on_zerogpu() or not self.waiting():  # the usual case, decided without the lock file
            return
        with self._lock, _machine_lock():
            waiting = self.waiting()
            if not waiting:
                return
            free = self.slots - len(self.active())
            for run in waiting[:max(0, free)]:
                if self.before_launch is not None:
                    self.before_launch()
                local.launch(run, resume=bool(run.read_status().get("resume")))

    # --- background loop
    def start(self):
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="ftspace-scheduler")
            self._thread.start()
        return self

    def _loop(self):
        training: set[str] = set()
        while not self._stop.is_set():
            try:
                self.kick()
                training = self._look(training)
            except Exception as e:  # never let the loop die; the next tick retries
                print(f"[ftspace scheduler] {type(e).__name__}: {e}", flush=True)
            time.sleep(self.poll)

    def _look(self, training: set[str]) -> set[str]:
        """Every run's status brought up to date (a run whose worker is gone recorded as interrupted), and
        on_finished(run) for each run that was active at the last look and has completed since; the ids active
        now."""
        active = set()
        for run in runs.list_runs():
            st = run.record_if_gone()
            if st.get("status") in runs.ACTIVE:
                active.add(run.id)
            elif run.id in training and st.get("status") == "completed" and self.on_finished is not None:
                self.on_finished(run)
        return active

    def shutdown(self):
        self._stop.set()


@contextlib.contextmanager
def _machine_lock():
    """An exclusive lock shared by every process using this runs folder (released if one dies)."""
    root = env.runs_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".queue.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
