"""A warm start for training workers on a CPU machine: `python -m ftspace.engine.warm`.

A run's worker spends ~6 s of one core importing the training stack (torch, transformers, peft, trl, Unsloth)
before its first step. This process imports it once, then forks one worker per request: each child is the
ordinary worker (`ftspace.engine.worker.main`) in a session of its own, its output in the run's log, with the
environment of its launch. Used only where it is the same as a cold start:

- a CPU machine (a fork after CUDA is initialised cannot use CUDA; nothing here imports torch before knowing);
- one process per run (torchrun starts its own);
- a run of the flavor it was started for: SFT through Unsloth in the precision this machine decides (Unsloth reads
  `UNSLOTH_CPU_BF16` when imported), or with `--plain` the plain HF path (backend hf, and DPO/ORPO on a CPU),
  which never imports Unsloth (its patches must not reach those runs);
- the same environment as this process was started with, but for ftspace's own settings (`FTSPACE_*`, read
  when used, never at import) and pytest's per-test name: a library reads its settings when imported.

Protocol: one JSON line per request on stdin (`{"argv", "env", "log", "cwd"}`), one JSON line per answer on stdout
(`{"pid"}`); first `{"ready": its environment after the imports}`, or `{"unavailable": why}` and exit.
`FTSPACE_WARM_START=0` turns it off.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys

STACK = ("transformers", "peft", "trl", "datasets", "ftspace.engine.worker", "ftspace.engine.prepare",
         "ftspace.engine.callbacks", "ftspace.data.tokenize")
STARTED_WARM = "started warm"  # the worker's first line in the run's log
IGNORED = ("FTSPACE_",)  # read by ftspace when used, never at import
IGNORED_NAMES = {"PYTEST_CURRENT_TEST"}


def env_key(env: dict) -> dict:
    """The part of an environment that must be the same for a launch to fork from the warm process."""
    return {k: v for k, v in env.items() if not k.startswith(IGNORED) and k not in IGNORED_NAMES}


def same_environment(launch: dict, started: dict, imported: dict) -> bool:
    """Whether a worker launched with `launch` may fork from the warm process started with `started`, whose
    environment was `imported` after its imports: each setting as it was started with, or as its libraries set it
    when imported (torch sets TORCHINDUCTOR_CACHE_DIR, for one, and a launcher that imported torch has it too)."""
    launch, started, imported = env_key(launch), env_key(started), env_key(imported)
    return all(launch.get(k) in (started.get(k), imported.get(k)) for k in {*launch, *started})


def _reap(*_):
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _child(request: dict):
    """In the fork: become the worker the request asks for; never returns."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.argv = ["ftspace.engine.worker", *request["argv"]]
        from ftspace.engine import worker
        from ftspace.engine.distributed import log

        stack = "with Unsloth" if "unsloth" in sys.modules else "without Unsloth"
        log(f"{STARTED_WARM}: forked from a process with the training stack ({stack}) already imported")
        code = worker.main(request["argv"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def main():
    # answers go to the launcher through a copy of stdout; stdout itself goes where stderr does, so the libraries'
    # banners printed while importing cannot be taken for an answer
    answer = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    from ftspace.models import hardware

    if hardware()["kind"] != "cpu":
        print(json.dumps({"unavailable": "not a CPU machine"}), file=answer, flush=True)
        return 0
    if "--plain" not in sys.argv[1:]:  # for Unsloth's runs; --plain: for the plain HF path (no Unsloth at all)
        from ftspace.engine import backends

        why = backends.import_unsloth()  # first: before transformers, trl and peft
        if why:
            print(json.dumps({"unavailable": why}), file=answer, flush=True)
            return 0
    for name in STACK:  # imported once here, for every child
        importlib.import_module(name)

    signal.signal(signal.SIGCHLD, _reap)
    print(json.dumps({"ready": dict(os.environ)}), file=answer, flush=True)
    for line in sys.stdin:  # ends when the launcher is gone; the workers started go on in their own sessions
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            answer.close()
            _child(request)
        print(json.dumps({"pid": pid}), file=answer, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
