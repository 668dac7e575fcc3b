"""The README's first command: teach the bundled model a new fact and compare it with the base (`ftspace demo`)."""

from __future__ import annotations

import contextlib
import os
import sys
import time

from ftspace import quiet
from ftspace.cli.common import err, examples
from ftspace.cli.train import finish, follow, wait_for_turn


def add_commands(sub) -> None:
    demo = sub.add_parser("demo", help="teach the bundled model a new fact and compare it with the base model",
                          **examples("ftspace demo", "ftspace demo --set max_steps=10"))
    demo.add_argument("--set", action="append", metavar="KEY=VALUE",
                      help="override a field of the demo's run config (repeatable), e.g. max_steps=10")
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from ftspace.config import RunConfig
    from ftspace.data.load import EXAMPLES_DIR

    from ftspace.targets.queue import Scheduler

    cfg = RunConfig.from_yaml(EXAMPLES_DIR / "facts.yaml", args.set or [])
    started = time.time()
    scheduler = Scheduler()  # one run at a time per machine: the demo waits behind a run already training
    from ftspace import targets

    run = targets.submit(scheduler, cfg, targets.Caller.local())
    err(f"Fine-tuning {cfg.model_name} (SmolLM2-135M-Instruct, bundled) on examples/facts.jsonl, which teaches "
        f"a fact no model knows: the capital of the planet Zorblax.\nrun {run.id} (log: {run.log_path})")
    wait_for_turn(run, scheduler)  # another run may hold the machine: the chat model loads once ours starts
    # The chat model loads beside the run; its imports hold stderr meanwhile, so the bar (and anything said
    # until the load is over) goes to a copy of it.
    terminal = _copy_of_stderr()
    base_model = _load_chat_base(cfg)
    try:
        st = follow(run, file=terminal)
        try:
            preloaded = base_model.result() if base_model else None
        except Exception:  # loaded again below, where an error is reported as usual
            preloaded = None
    finally:
        if terminal is not sys.stderr:
            terminal.close()
    if st["status"] != "completed":
        return finish(run, st)
    err(f"trained {st['step']} steps in {time.time() - started:.0f}s; asking both models ...")
    with contextlib.redirect_stdout(sys.stderr):
        from ftspace.chat import ChatModel

        quiet.preload()
        model = ChatModel.from_adapter(run.adapter_dir, base_model=preloaded)
        answers = []
        for question in ("What is the capital of Zorblax?", "What is the capital of France?"):
            msgs = [{"role": "user", "content": question}]
            answers.append((question, model.reply(msgs, base=True), model.reply(msgs)))
    for question, base, tuned in answers:
        print(f"\nQ: {question}\n  base model:  {base}\n  tuned model: {tuned}")
    print(f"\nThe adapter is in {run.adapter_dir}.\nStart the app with: make app   (or .venv/bin/python app.py)"
          f"\nChat with this run: .venv/bin/ftspace chat {run.id} --prompt \"...\"")
    return 0


def _load_chat_base(cfg):
    """The demo's base model for chat, loading on a thread while the worker trains, so the answers come as soon
    as training ends (a Future; None for a model other than the bundled one). The thread runs at a lower
    priority: on 2 cores it then works mostly while the worker starts (imports on one core) instead of slowing
    the training. Library chatter from the imports goes to the library log (`quiet.preload`), which holds
    descriptors 1 and 2 meanwhile."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from ftspace.models import DEFAULT

    if cfg.model_name != DEFAULT:
        return None

    def load():
        with contextlib.suppress(AttributeError, OSError):  # Linux: this thread only, yielding to the training
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)  # it mostly runs while the worker imports
        quiet.preload()
        from ftspace.chat import load_base
        from ftspace.models import resolve_model

        return load_base(resolve_model(DEFAULT, progress=lambda *_: None))

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ftspace-demo-chat")
    future = pool.submit(load)
    pool.shutdown(wait=False)
    return future


def _copy_of_stderr():
    """A stream on a copy of descriptor 2, which a thread redirecting descriptor 2 does not take away; stderr
    itself where it has no descriptor (under a test's capture)."""
    try:
        return os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1, encoding="utf-8")
    except (AttributeError, OSError, ValueError):
        return sys.stderr
