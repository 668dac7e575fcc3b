"""Runs that train on this machine: a worker process per run (`python -m ftspace.engine.worker`, or torchrun for
several processes), its output going to the run's log file. The run store (ftspace.runs) keeps what the worker
writes; the queue (ftspace.targets.queue) decides when a run starts; this starts it.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
from pathlib import Path

import psutil

from ftspace import runs
from ftspace.access import worker_env
from ftspace.config import RunConfig
from ftspace.data import check_rewards, resolve, scan
from ftspace.errors import ConfigError
from ftspace.engine import distributed, warm
from ftspace.models import cpu_computes_bf16, hardware


def worker_environment() -> dict:
    """The environment a worker starts with (no tokens on a shared app: access.worker_env)."""
    env = worker_env(dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false"))
    project_root = str(Path(__file__).resolve().parent.parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [project_root, env.get("PYTHONPATH")]))
    return env


def launch(run: runs.Run, resume: bool = False) -> subprocess.Popen:
    """Start the worker process for a run; its output goes to the run's log file."""
    env = worker_environment()
    count = distributed.processes(run.config().num_processes)
    args = distributed.command(str(run.path), resume, count)  # several processes: torchrun (data-parallel)
    run.set_status(status="queued", error=None, waiting=False)
    (run.path / "worker.json").unlink(missing_ok=True)
    pid = _warm_fork(run, resume, env) if count <= 1 else None
    if pid is not None:  # forked by the warm process, which reaps it
        proc = psutil.Process(pid)
    else:
        with open(run.log_path, "ab") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True)
        # Reap the worker when it exits, so a long-lived app does not collect zombie processes.
        threading.Thread(target=proc.wait, daemon=True, name=f"reap-{run.id}").start()
    # Only the launcher writes worker.json. status.json has many writers (this launcher, the worker, the
    # app's Stop, the scheduler); each change goes through Run.set_status, under the run's lock.
    try:
        started = psutil.Process(proc.pid).create_time()
    except psutil.NoSuchProcess:
        started = None
    runs.write_json_atomic(run.path / "worker.json", {"pid": proc.pid, "started": started})
    return proc


# --- the warm start (ftspace.engine.warm): a process with the training stack imported forks the workers


class Warm:
    """A `python -m ftspace.engine.warm` process, started with the environment `env`; `fork` asks it for a worker."""

    READY_S, FORK_S = 180, 30

    def __init__(self, env: dict, flavor: str = "unsloth"):
        self.env, self.imported, self.flavor = env, env, flavor
        plain = ["--plain"] if flavor == "plain" else []
        self.proc = subprocess.Popen([sys.executable, "-m", "ftspace.engine.warm", *plain], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                     start_new_session=True)
        self.ready: bool | None = None
        self.lock = threading.Lock()

    def _answer(self, seconds: float) -> bytes | None:
        if not select.select([self.proc.stdout], [], [], seconds)[0]:
            return None
        return self.proc.stdout.readline() or None

    def fork(self, argv: list[str], env: dict, log: Path) -> int | None:
        """The pid of a worker forked with `argv` and `env`, its output to `log`; None when this process cannot."""
        with self.lock:
            try:
                if self.ready is None:  # the first launch waits for the imports it would have made itself
                    self.imported = json.loads(self._answer(self.READY_S) or "{}").get("ready")
                    self.ready = isinstance(self.imported, dict)
                if not self.ready or self.proc.poll() is not None or not self.serves(env):
                    return None
                request = {"argv": argv, "env": env, "log": str(log), "cwd": os.getcwd()}
                self.proc.stdin.write(json.dumps(request).encode() + b"\n")
                self.proc.stdin.flush()
                return int(json.loads(self._answer(self.FORK_S))["pid"])
            except (OSError, ValueError, KeyError, TypeError):  # no answer in time, or not one: an answer that came
                self.ready = False  # late would be taken for the next launch's, so this process is done
                return None
            finally:
                if not self.ready or self.proc.poll() is not None:
                    self.close()

    def serves(self, env: dict) -> bool:
        return warm.same_environment(env, self.env, self.imported or self.env)

    def close(self):
        self.ready = False
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


_WARM: dict[str, Warm] = {}  # one per flavor, started by the first launch it can serve
_WARM_LOCK = threading.Lock()


def flavor(cfg: RunConfig) -> str | None:
    """Which warm process may fork a run's worker: 'unsloth' (SFT through Unsloth), 'plain' (the HF path, which
    must not see Unsloth's patches), or None (Unsloth asked for where its CPU path cannot train: the cold start
    says why)."""
    if cfg.backend == "hf" or (cfg.method != "sft" and cfg.backend == "auto"):
        return "plain"
    return "unsloth" if cfg.method == "sft" else None


def warm_env(env: dict, kind: str = "unsloth", compute_dtype: str = "auto") -> dict:
    """A worker's environment with the precision Unsloth is told when imported (its warm process imports it)."""
    if kind != "unsloth":
        return env
    return {**env, "UNSLOTH_CPU_BF16": "1" if cpu_computes_bf16(compute_dtype) else "0"}


def warm_start(env: dict, kind: str = "unsloth") -> Warm | None:
    """The warm process of a flavor (started now if there is none alive), or None where warm starts are off."""
    if os.environ.get("FTSPACE_WARM_START", "1") == "0" or hardware()["kind"] != "cpu":
        return None
    with _WARM_LOCK:
        old = _WARM.get(kind)
        if old is not None and (old.ready is False or old.proc.poll() is not None):
            _WARM.pop(kind).close()
        if kind not in _WARM:
            _WARM[kind] = Warm(warm_env(env, kind), kind)
        return _WARM[kind]


def warm_up() -> list[Warm]:
    """Start the warm processes now rather than at the first launch (the test suite does, once per test process)."""
    return [w for w in (warm_start(worker_environment(), kind) for kind in ("unsloth", "plain")) if w]


def _warm_fork(run: runs.Run, resume: bool, env: dict) -> int | None:
    """A worker forked from a warm process, where that is the same as a cold start (ftspace.engine.warm)."""
    cfg = run.config()
    kind = flavor(cfg)
    if kind is None:
        return None
    try:
        env = warm_env(env, kind, cfg.compute_dtype)
        starter = warm_start(env, kind)
    except Exception:  # a misspelt machine setting: the cold start says it in the run's log
        return None
    if starter is None:
        return None
    return starter.fork([str(run.path)] + (["--resume"] if resume else []), env, run.log_path)


def preflight(cfg: RunConfig):
    """Fail before a run exists when a local dataset cannot be used (Hub data is checked by the worker), or the
    run cannot train on this machine's hardware."""
    from ftspace import env

    here = cfg.train_on != "hf_jobs" and not env.on_zerogpu()  # not a job's GPU, nor a ZeroGPU call's
    if here and cfg.method == "grpo" and cfg.load_in_4bit and hardware()["kind"] == "cpu":
        raise ConfigError("method grpo with load_in_4bit needs a CUDA GPU (4-bit weights and the replies GRPO "
                          "writes are GPU work): set load_in_4bit to false on this CPU, or train on hf_jobs.")
    if resolve(cfg.dataset)[0] == "file":  # streamed: a large file is read through, not held
        report = scan(cfg.dataset, dataset_format=cfg.dataset_format, prompt_column=cfg.prompt_column,
                      response_column=cfg.response_column, method=cfg.method)
        if cfg.method == "grpo":
            check_rewards(report, cfg)


def start(cfg: RunConfig) -> tuple[runs.Run, subprocess.Popen]:
    preflight(cfg)
    run = runs.create(cfg)
    return run, launch(run)


def resume(run: runs.Run) -> subprocess.Popen:
    runs.prepare_resume(run)
    return launch(run, resume=True)
