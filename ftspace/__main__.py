"""The command line: `ftspace COMMAND` (installed by `make setup`) or `ftspace COMMAND`, over the
same functions the app calls.

Exit codes (EXIT_CODES, also in `ftspace --help`): 0 done; 1 a run that ended failed, stopped or interrupted;
2 an error the user can fix (FtspaceError: one line on stderr); 130 cancelled with Ctrl-C. Anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

from ftspace import env, quiet
from ftspace.errors import FtspaceError



EXIT_CODES = """exit codes:
  0    done (a run: completed)
  1    the run ended failed, stopped or interrupted (its error is on stderr, its folder on stdout)
  2    bad input or a problem you can fix: one line on stderr says what and where
  130  cancelled with Ctrl-C (a run stops after the current step; `ftspace resume RUN` goes on)"""


def err(message: str, file=None):
    print(message, file=file or sys.stderr, flush=True)


# --- flags generated from the schemas (RunConfig, GenerationSettings): one definition of every option

ALIASES = {"model_name": ["--model"], "dataset_format": ["--format"], "train_on": ["--on"],
           "jobs_flavor": ["--flavor"]}


def add_schema_flags(parser, schema, names=None, given_only=True):
    """One `--field-name` flag per field of `schema` (or of `names`), with its help, default and choices.
    given_only: absent flags stay out of the namespace, so a YAML file's values stand unless a flag is given."""
    from dataclasses import fields

    from ftspace.config import default_of, field_type

    groups = {}
    for f in fields(schema):
        if names is not None and f.name not in names:
            continue
        meta, kind, default = f.metadata, field_type(f, schema), default_of(f)
        group = groups.get(meta["group"]) or groups.setdefault(
            meta["group"], parser.add_argument_group(f"{meta['group']} options"))
        shown = ",".join(default) if isinstance(default, list) else default
        extra = dict(default=argparse.SUPPRESS) if given_only else dict(default=default)
        if kind is bool:
            extra["action"] = argparse.BooleanOptionalAction
        else:
            extra["metavar"] = {int: "N", float: "X", list: "A,B"}.get(kind, "TEXT")
        if meta.get("choices"):
            extra["metavar"] = "{" + ",".join(meta["choices"]) + "}"  # checked by the schema: one-line errors
        group.add_argument("--" + f.name.replace("_", "-"), *ALIASES.get(f.name, []), dest=f.name,
                           help=f"{meta['help']} (default: {shown})".replace("%", "%%"), **extra)


def schema_values(args, schema) -> dict:
    """The schema's fields that were given as flags, by name (values still as typed: the schema coerces)."""
    from dataclasses import fields

    return {f.name: getattr(args, f.name) for f in fields(schema) if hasattr(args, f.name)}


# --- train / follow


def follow(run, quiet: bool = False, scheduler=None, file=None) -> dict:
    """Show a progress bar on stderr (or `file`) until the run ends; Ctrl-C asks the worker to stop gracefully.

    With a scheduler, first wait for the run's turn (another run on this machine, from the app or
    another CLI, may be training), starting it when the machine is free."""
    from tqdm import tqdm

    from ftspace.runs import ACTIVE

    if scheduler is not None:
        wait_for_turn(run, scheduler)
    bar = None if quiet else tqdm(total=None, desc=run.id, unit="step", file=file or sys.stderr, dynamic_ncols=True)
    offset = 0
    try:
        while True:
            events, offset = run.events(offset)
            for event in events:
                if bar is not None:
                    if event.get("total_steps") and bar.total != event["total_steps"]:
                        bar.total = event["total_steps"]
                    bar.n = event.get("step", bar.n)
                    shown = {k: f"{event[k]:.4g}" for k in ("loss", "eval_loss", "tokens_per_s") if k in event}
                    if shown:
                        bar.set_postfix(shown, refresh=False)
                    bar.refresh()
            st = run.status()
            if st["status"] not in ACTIVE:
                if bar is not None:
                    bar.n = st.get("step", bar.n)
                    bar.close()
                return st
            time.sleep(0.5)
    except KeyboardInterrupt:
        err("\ncancelling the job (Resume continues from the last checkpoint it pushed) ..." if run.read_status().get(
            "job") else "\nstopping after the current step (the adapter will be saved) ...", file)
        with contextlib.suppress(FtspaceError):
            run.request_stop()
        return follow(run, quiet=True)


def finish(run, st: dict) -> int:
    if st["status"] == "completed":
        note = " (stopped early)" if st.get("stopped_early") else ""
        err(f"completed{note}: step {st.get('step')}/{st.get('total_steps')}, loss {st.get('train_loss')}")
        print(run.path)
        return 0
    err(f"run {run.id} {st['status']}: {st.get('error') or 'see ' + str(run.log_path)}")
    print(run.path)
    return 1


def wait_for_turn(run, scheduler, poll: float = 1.0):
    """Kick the machine's queue until this run has left it; Ctrl-C while waiting cancels it."""
    told = False
    try:
        while True:
            scheduler.kick()
            st = run.read_status()
            if not (st.get("status") == "queued" and st.get("waiting")):
                return
            if not told:
                busy = ", ".join(r.id for r in scheduler.active()) or "an earlier waiting run"
                err(f"waiting for {busy} to finish: one run trains at a time on this machine "
                    f"(position {scheduler.position(run)}; Ctrl-C to cancel)")
                told = True
            time.sleep(poll)
    except KeyboardInterrupt:
        run.request_stop()  # a waiting run is simply taken out of the queue, resumable later
        err(f"\ncancelled {run.id} while it waited; `ftspace resume {run.id}` queues it again")
        raise SystemExit(130) from None


def config_from_args(args, base: dict | None = None):
    """RunConfig from --config YAML (or `base`), then --set pairs, then --field flags (the last wins)."""
    from ftspace.config import RunConfig, parse_overrides

    values = dict(base or {})
    if getattr(args, "config", None):
        values.update(RunConfig.from_yaml(args.config).to_dict())
    values.update(parse_overrides(getattr(args, "set", None) or []))
    values.update(schema_values(args, RunConfig))
    return RunConfig.from_dict(values)


def cmd_train(args) -> int:
    from ftspace.scheduler import Scheduler

    cfg = config_from_args(args)
    from ftspace.access import hub_token

    if cfg.train_on == "hf_jobs":
        return train_on_jobs(cfg, args.quiet)
    from ftspace import targets

    scheduler = Scheduler()
    run = targets.submit(scheduler, cfg, targets.Caller.local(hub_token()))  # HF_TOKEN or `hf auth login`
    err(f"run {run.id}: training {cfg.model_name} on {cfg.dataset} (log: {run.log_path})")
    return finish(run, follow(run, quiet=args.quiet, scheduler=scheduler))


def train_on_jobs(cfg, quiet: bool, run=None) -> int:
    """Submit (or resume) a run on Hugging Face Jobs with this machine's token and follow it here."""
    from ftspace import jobs
    from ftspace.access import hub_token

    token = hub_token()
    if run is None:
        from ftspace import targets
        from ftspace.scheduler import Scheduler

        run = targets.submit(Scheduler(), cfg, targets.Caller.local(token))  # sent to Jobs and followed
    else:
        jobs.resume(run, token)
    job = run.read_status()["job"]
    err(f"run {run.id}: training {cfg.model_name} on {cfg.dataset} on Hugging Face Jobs ({job['flavor']}, billed to "
        f"{job['namespace']}): job {job['url']} (log: {run.log_path})")
    jobs.attach(run, token)
    return finish(run, follow(run, quiet=quiet))


def cmd_resume(args) -> int:
    from ftspace import runs
    from ftspace.scheduler import Scheduler

    run = runs.find(args.run)
    st = run.read_status()
    if st.get("job") and st.get("status") in runs.ACTIVE:  # its job still runs: follow it again from here
        from ftspace import jobs
        from ftspace.access import hub_token

        err(f"run {run.id} is still training on Hugging Face Jobs ({st['job']['url']}): following it")
        jobs.attach(run, hub_token())
        return finish(run, follow(run, quiet=args.quiet))
    if st.get("job"):
        return train_on_jobs(run.config(), args.quiet, run=run)
    scheduler = Scheduler()
    scheduler.resubmit(run)
    err(f"resuming {run.id} from {run.last_checkpoint().name if run.last_checkpoint() else 'the start'}")
    return finish(run, follow(run, quiet=args.quiet, scheduler=scheduler))


def cmd_stop(args) -> int:
    from ftspace import runs

    run = runs.find(args.run)
    if run.read_status().get("job"):
        from ftspace import jobs
        from ftspace.access import hub_token

        jobs.stop(run, hub_token())
        err(f"cancelled the job of {run.id}: `ftspace resume {run.id}` continues from the last checkpoint it pushed")
        if args.wait:
            jobs.attach(run, hub_token())
    else:
        run.request_stop()
        err(f"stop requested for {run.id}: it stops after the current step and saves the adapter")
    if args.wait:
        st = run.wait()
        err(f"{run.id}: {st['status']}")
    return 0


def cmd_runs(args) -> int:
    from ftspace import runs

    items = [r.summary() for r in runs.list_runs()]
    if args.json:
        print(json.dumps(items, indent=1))
        return 0
    if not items:
        err(f"no runs yet in {env.runs_root()}")
        return 0
    print(f"{'RUN':40} {'STATUS':12} {'STEP':>9} {'LOSS':>8}  MODEL / DATASET")
    for r in items:
        step = f"{r['step']}/{r['total_steps'] or '?'}"
        loss = f"{r['train_loss']:.4f}" if isinstance(r.get("train_loss"), float) else "-"
        where = f"  [Jobs {r['jobs_flavor']}]" if r.get("jobs_flavor") else ""
        print(f"{r['id']:40} {r['status'] or '?':12} {step:>9} {loss:>8}  {r.get('model_name', '?')} / "
              f"{r.get('dataset', '?')}{where}")
    return 0


def cmd_status(args) -> int:
    """One run: status, steps, losses, its settings, checkpoints and where its files are."""
    from ftspace import runs

    run = runs.find(args.run)
    if run.read_status().get("job"):  # trains on Hugging Face Jobs: ask the Hub where it is
        from ftspace import jobs
        from ftspace.access import hub_token

        jobs.refresh(run, hub_token())
    st = run.status()
    info = {**run.summary(), **{k: st[k] for k in ("stopped_early", "updated") if k in st},
            "path": str(run.path), "log": str(run.log_path),
            "adapter": str(run.adapter_dir) if (run.adapter_dir / "adapter_config.json").exists() else None,
            "checkpoints": [p.name for p in run.checkpoints()]}
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        loss = info.get("train_loss")
        print(f"{run.id}: {info['status']}, step {info['step']}/{info['total_steps'] or '?'}"
              + (f", loss {loss:.4f}" if isinstance(loss, float) else "")
              + (f" ({info['error']})" if info.get("error") else ""))
        print(f"model {info.get('model_name', '?')}, dataset {info.get('dataset', '?')}")
        if st.get("job"):
            print(f"on Hugging Face Jobs: {st['job']['flavor']}, job {st['job']['url']} ({st.get('job_stage', '?')}), "
                  f"repo {st['job']['repo']}")
        print(f"adapter: {info['adapter'] or 'not yet'}; checkpoints: {', '.join(info['checkpoints']) or 'none'}")
        print(f"folder: {info['path']}")
    return 0


# --- chat


def cmd_chat(args) -> int:
    from ftspace import runs
    from ftspace.config import GenerationSettings
    from ftspace.errors import RunError

    settings = GenerationSettings(**schema_values(args, GenerationSettings))  # checked before anything loads
    run = runs.find(args.run)
    if not (run.adapter_dir / "adapter_config.json").exists():
        raise RunError(f"Run {run.id} has no adapter yet (status {run.status()['status']}): wait for it to finish.")
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
        {"role": "user", "content": args.prompt}]
    quiet.preload()  # import-time library chatter goes to the library log, not the terminal
    with contextlib.redirect_stdout(sys.stderr):  # what is left must not mix with the reply
        from ftspace.chat import ChatModel

        model = ChatModel.from_adapter(run.adapter_dir)
        reply = model.reply(messages, settings, base=args.base)
    print(reply)
    return 0


# --- publish


def cmd_push(args) -> int:
    from ftspace import access, hub, runs

    run = runs.find(args.run)
    token = access.hub_token()  # HF_TOKEN or the saved `hf auth login` token; never a command-line flag
    quiet.preload()
    with contextlib.redirect_stdout(sys.stderr):
        url = hub.push(run, args.repo, token, private=args.private, merged=args.merged)
    print(url)
    return 0


# --- data


INSPECT_FIELDS = ("dataset_format", "prompt_column", "response_column", "dataset_config", "dataset_split",
                  "model_name", "max_seq_length")


def cmd_data_inspect(args) -> int:
    from ftspace.access import hub_token
    from ftspace.data.inspection import inspect_dataset

    cfg = config_from_args(args, base={"dataset": args.file})  # the options are RunConfig's, checked by it
    options = {name: getattr(cfg, name) for name in INSPECT_FIELDS}
    if args.no_tokens:
        options["model_name"] = None
    if options["model_name"]:
        quiet.preload()
    with contextlib.redirect_stdout(sys.stderr):  # library output must not mix with the report
        found = inspect_dataset(cfg.dataset, token=hub_token(), progress=True, **options)
    from ftspace.data import DataReport

    report = DataReport(**found["report"])
    if args.json:
        out = report.to_dict()
        if out.get("tokens"):
            out["tokens"].pop("lengths", None)
        out["preview"] = found["preview"]
        print(json.dumps(out, indent=1, ensure_ascii=False))
    else:
        print(report.summary())
        if found["tokens_error"]:
            print(f"token statistics unavailable: {found['tokens_error']}")
        print("first example:", json.dumps(found["preview"][0], ensure_ascii=False)[:500])
    return 0


def cmd_data_create(args) -> int:
    """`data synth` / `data raft`: a teacher writes rows; the file's path is the last line on stdout."""
    from ftspace.access import hub_token, teacher_key
    from ftspace.data import DataReport
    from ftspace.data.create import CreateSettings, describe_preview, preview, raft, synth, write_rows
    from ftspace.data.create.teacher import Teacher
    from ftspace.data.inspection import inspect_dataset

    mode = args.data_command
    settings = CreateSettings.from_dict(schema_values(args, CreateSettings))
    teacher = Teacher(settings, key=teacher_key() if settings.teacher == "openai" else None,
                      token=hub_token() if settings.teacher == "hf" else None)
    evaluation = synth.eval_questions(settings.eval_dataset) if settings.eval_dataset else []
    if mode == "synth":
        seeds, columns = synth.read_seeds(args.seeds)
        context = []
        if args.context:
            from ftspace.data.create.documents import document_files, read_document

            context = [read_document(f) for f in document_files(args.context)]
        err(describe_preview(preview(settings, "synth", len(seeds))))
    else:
        chunks, documents = raft.load_chunks(args.documents, settings)
        err(raft.describe_chunks(chunks, documents, settings))
        err(describe_preview(preview(settings, "raft", 0, chunks=raft.chunks_used(len(chunks), settings))))
    quiet.preload()  # the bundled teacher, and the validation report's tokenizer after
    from tqdm import tqdm

    bar = tqdm(total=1, desc="creating", file=sys.stderr, dynamic_ncols=True,
               disable=args.quiet or not sys.stderr.isatty())

    def progress(done, total, what):
        bar.total = total
        bar.set_postfix_str(what[:40])
        bar.update(done - bar.n)

    with contextlib.redirect_stdout(sys.stderr):
        if mode == "synth":
            pairs, report = synth.synthesize(settings, teacher, seeds, context=context, evaluation=evaluation,
                                             progress=progress)
            rows = synth.as_rows(pairs, columns)
        else:
            rows, report = raft.build(settings, teacher, chunks, documents=documents, evaluation=evaluation,
                                      progress=progress)
    bar.close()
    if not rows:
        err(report.summary())
        raise FtspaceError("no rows were kept: see the drops above (a stronger teacher, or other seeds, helps).")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = write_rows(rows, args.out or f"created/{mode}-{stamp}.jsonl", report)
    err(report.summary())
    with contextlib.redirect_stdout(sys.stderr):  # the same validation report as any dataset
        found = inspect_dataset(str(out), token=None)
    err(DataReport(**found["report"]).summary())
    print(out)
    return 0


def cmd_estimate(args) -> int:
    from ftspace.access import hub_token
    from ftspace.planning import describe, plan

    cfg = config_from_args(args)
    quiet.preload()
    with contextlib.redirect_stdout(sys.stderr):
        out = plan(cfg.to_dict(), token=hub_token())
    line = None
    if cfg.train_on == "hf_jobs":  # its time and cost on the Jobs flavor
        from ftspace import jobs

        out["hf_jobs"] = jobs.quote(out, cfg, hub_token())
        line = out["hf_jobs"]["text"]
    err(describe(out, line).replace("**", ""))
    print(json.dumps(out, indent=1))
    return 0


# --- evaluation


def cmd_eval(args) -> int:
    from ftspace import runs
    from ftspace.access import hub_token
    from ftspace.evaluation import TRADEOFF_COLUMNS, EvalOptions, evaluate, summary, tradeoff

    run = runs.find(args.run)
    if args.checkpoint:
        run.checkpoint(args.checkpoint)  # a wrong step fails before anything loads
    steps = [int(p.name.split("-")[1]) for p in run.checkpoints()] + [None] if args.each_checkpoint else \
        [args.checkpoint]
    quiet.preload()
    from tqdm import tqdm

    cards = []
    for step in steps:
        options = EvalOptions(checkpoint=step, test_dataset=args.test_dataset or "", probe_file=args.probe or "",
                              max_rows=args.max_rows, max_new_tokens=args.max_new_tokens)
        bar = tqdm(total=1, desc="evaluating", unit="answer", file=sys.stderr,
                   disable=args.quiet or not sys.stderr.isatty())

        def progress(done, total, what, bar=bar, step=step):
            bar.total = total
            bar.set_description(f"{f'checkpoint-{step}' if step else 'adapter'}: {what}")
            bar.update(done - bar.n)

        try:
            with contextlib.redirect_stdout(sys.stderr):
                cards.append(evaluate(run, options, token=hub_token(), progress=progress))
        except KeyboardInterrupt:
            err("\nevaluation cancelled (Ctrl-C): nothing more was saved")
            return 130
        finally:
            bar.close()
    if args.use:
        from ftspace.engine.saving import use_checkpoint

        use_checkpoint(run, args.checkpoint)
        err(f"run {run.id} now chats and publishes with {cards[-1]['checkpoint']}")
    if args.json:
        print(json.dumps(cards if args.each_checkpoint else cards[0], indent=1, ensure_ascii=False))
        return 0
    if args.each_checkpoint:
        print("  ".join(TRADEOFF_COLUMNS))
        for row in tradeoff(run):
            print("  ".join(str(c) for c in row))
        return 0
    card = cards[0]
    print(summary(card).replace("**", ""))
    print("\nwhere tuned did worst (prompt | reference | base | tuned):")
    for e in card["examples"][:5]:
        print(" | ".join(str(e[k])[:80].replace("\n", " ") for k in ("prompt", "reference", "base", "tuned")))
    return 0


# --- sweeps


def cmd_sweep(args) -> int:
    from ftspace import sweep as sweeps
    from ftspace.access import hub_token
    from ftspace.scheduler import Scheduler

    if args.resume:
        sw = sweeps.get(args.resume)
        err(f"resuming sweep {sw.id}")
    else:
        cfg = config_from_args(args)
        sw = sweeps.create(cfg, args.trials)
        err(f"sweep {sw.id}: {args.trials} trials over learning_rate, lora_r/lora_alpha, num_train_epochs "
            f"(Optuna TPE), scored on validation loss; folder {sw.path}")

    def on_update(data, t):
        value = f", best eval loss {t['value']:.4f}" if t.get("value") is not None else ""
        err(f"trial {t['number']}: {t['status']} (run {t['run']}){value}")

    try:
        data = sweeps.run_sweep(sw, Scheduler(), token=hub_token(), on_update=on_update)
    except KeyboardInterrupt:
        err(f"\nsweep paused; the running trial keeps its checkpoints. `ftspace sweep --resume {sw.id}` "
            "goes on")
        return 130
    if args.json:
        print(json.dumps(data, indent=1))
        return 0
    from ftspace.sweep import COLUMNS, table

    print("  ".join(COLUMNS))
    for row in table(data):
        print("  ".join(str(c) for c in row))
    best = sw.best()
    if best is None:
        err("no trial finished with a validation loss")
        return 1
    (sw.path / "best.yaml").write_text(sw.best_config().to_yaml())
    err(f"best: trial {best['number']} (run {best['run']}), eval loss {best['value']:.4f}; its config: "
        f"{sw.path / 'best.yaml'} (ftspace train --config {sw.path / 'best.yaml'})")
    print(sw.path)
    return 0


# --- demo: the README's first command


def cmd_demo(args) -> int:
    from ftspace.config import RunConfig
    from ftspace.data.load import EXAMPLES_DIR

    from ftspace.scheduler import Scheduler

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


# --- parser


def examples(*lines: str) -> dict:
    """A subcommand's epilog: its examples, then the exit codes."""
    return dict(epilog="examples:\n" + "".join(f"  {line}\n" for line in lines) + "\n" + EXIT_CODES,
                formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    from ftspace.config import GenerationSettings, RunConfig
    from ftspace.evaluation import DEFAULT_MAX_ROWS

    p = argparse.ArgumentParser(
        prog="ftspace", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fine-tune LLMs with Unsloth LoRA, from the command line (the app: `python app.py`).\n"
                    "Runs go to ./runs of the folder you are in, or $FTSPACE_RUNS. `python -m ftspace` works too.",
        epilog="examples:\n  ftspace demo\n  ftspace data inspect data.jsonl\n"
               "  ftspace train --dataset data.jsonl --max-steps 60\n  ftspace runs --json\n"
               "  ftspace status RUN --json\n  ftspace chat RUN --prompt \"Hello\"\n"
               "  ftspace push RUN --repo my-adapter\n\nEach command's own help: ftspace COMMAND --help\n\n"
               + EXIT_CODES)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="start a run and follow it (the run folder is the last line on stdout)",
                       **examples("ftspace train --config examples/facts.yaml",
                                  "ftspace train --dataset data.jsonl --max-steps 60 --lora-r 32",
                                  "ftspace train --config run.yaml --set learning_rate=1e-4",
                                  "ftspace train --config run.yaml --on hf-jobs --flavor a10g-large   # on Hugging Face "
                                  "Jobs, billed to your account"))
    t.add_argument("--config", help="YAML file of RunConfig fields")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field (repeatable)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    add_schema_flags(t, RunConfig)
    t.set_defaults(func=cmd_train)

    r = sub.add_parser("resume", help="continue an interrupted or stopped run from its last checkpoint (a run on "
                       "Hugging Face Jobs: on a new job; one whose job still runs: follow it again)",
                       **examples("ftspace resume RUN", "ftspace resume RUN --quiet"))
    r.add_argument("run", help="a run id (`ftspace runs` lists them)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_resume)

    s = sub.add_parser("stop", help="ask a running run to stop after the current step",
                       **examples("ftspace stop RUN", "ftspace stop RUN --wait"))
    s.add_argument("run", help="a run id (`ftspace runs` lists them)")
    s.add_argument("--wait", action="store_true", help="wait until it has stopped")
    s.set_defaults(func=cmd_stop)

    ls = sub.add_parser("runs", help="list the runs in ./runs (or $FTSPACE_RUNS)",
                        **examples("ftspace runs", "ftspace runs --json   # id, status, step, total_steps, "
                                   "train_loss, eval_loss, created, error, model_name, dataset, lora_r, ..."))
    ls.add_argument("--json", action="store_true", help="a JSON list on stdout")
    ls.set_defaults(func=cmd_runs)

    st = sub.add_parser("status", help="one run: status, step, losses, adapter, checkpoints, folder",
                        **examples("ftspace status RUN", "ftspace status RUN --json"))
    st.add_argument("run", help="a run id (`ftspace runs` lists them)")
    st.add_argument("--json", action="store_true", help="a JSON object on stdout")
    st.set_defaults(func=cmd_status)

    c = sub.add_parser("chat", help="answer one prompt with a run's adapter (reply on stdout)",
                       **examples('ftspace chat RUN --prompt "What is the capital of Zorblax?"',
                                  'ftspace chat RUN --prompt "Hi" --base   # the base model, adapter off',
                                  'ftspace chat RUN --prompt "Hi" --system "Answer briefly." --temperature 0'))
    c.add_argument("run", help="a run id (`ftspace runs` lists them)")
    c.add_argument("--prompt", required=True, help="the user message")
    c.add_argument("--system", default="", help="a system prompt")
    c.add_argument("--base", action="store_true", help="answer with the adapter disabled")
    add_schema_flags(c, GenerationSettings)
    c.set_defaults(func=cmd_chat)

    pu = sub.add_parser("push", help="push a run's adapter and model card to the Hub (token: HF_TOKEN or hf auth login)",
                        **examples("ftspace push RUN --repo my-adapter --private",
                                   "ftspace push RUN --repo my-org/my-adapter --merged"))
    pu.add_argument("run", help="a run id (`ftspace runs` lists them)")
    pu.add_argument("--repo", required=True, help="repo name, or owner/name")
    pu.add_argument("--private", action="store_true")
    pu.add_argument("--merged", action="store_true", help="also push base+adapter merged to 16-bit, as REPO-merged")
    pu.set_defaults(func=cmd_push)

    d = sub.add_parser("data", help="dataset tools")
    dsub = d.add_subparsers(dest="data_command", required=True)
    di = dsub.add_parser("inspect", help="detect the format, convert, and report on a dataset",
                         **examples("ftspace data inspect data.jsonl", "ftspace data inspect tatsu-lab/alpaca --json",
                                    "ftspace data inspect table.csv --dataset-format columns --prompt-column q "
                                    "--response-column a"))
    di.add_argument("file", help="a data file, a Hub dataset id or example:NAME (RunConfig's dataset)")
    di.add_argument("--json", action="store_true")
    di.add_argument("--no-tokens", action="store_true", help="skip token statistics")
    add_schema_flags(di, RunConfig, names=INSPECT_FIELDS)
    di.set_defaults(func=cmd_data_inspect)

    from ftspace.data.create.settings import RAFT_FIELDS, SYNTH_FIELDS, CreateSettings

    def creator(mode, help, epilog, names):
        c = dsub.add_parser(mode, help=help, epilog="examples:\n" + epilog + "\n\nThe new file's path is the last line "
                            "on stdout.", formatter_class=argparse.RawDescriptionHelpFormatter)
        c.add_argument("--out", metavar="PATH", help=f"output JSONL (default created/{mode}-TIME.jsonl)")
        c.add_argument("--quiet", action="store_true", help="no progress bar")
        add_schema_flags(c, CreateSettings, names=names)
        c.set_defaults(func=cmd_data_create)
        return c

    ds = creator("synth", "write many question/answer pairs in the style of a few (a teacher model generates, then "
                 "repeats, leaks and unusable rows are dropped)",
                 "  ftspace data synth --seeds seeds.jsonl --num-pairs 20\n"
                 "  ftspace data synth --seeds seeds.csv --teacher openai --teacher-url "
                 "http://127.0.0.1:8080/v1 --teacher-model qwen2.5 --num-pairs 500 --eval-dataset test.jsonl\n"
                 "  ftspace data synth --seeds seeds.jsonl --teacher hf --teacher-model "
                 "Qwen/Qwen2.5-72B-Instruct --judge\n\nThe key of an 'openai' teacher is read from FTSPACE_TEACHER_KEY "
                 "or OPENAI_API_KEY; 'hf' uses HF_TOKEN or your saved login.", SYNTH_FIELDS)
    ds.add_argument("--seeds", required=True, metavar="FILE", help="5-10 example pairs (any format `data inspect` reads)")
    ds.add_argument("--context", nargs="*", metavar="DOC", help="documents whose facts the new pairs may use")
    dr = creator("raft", "turn documents into RAFT rows: a question, the document that answers it among distractors, "
                 "and an answer quoting it",
                 "  ftspace data raft docs/ --max-chunks 10\n  ftspace data raft manual.pdf notes.md "
                 "--teacher openai --teacher-url http://127.0.0.1:8000/v1 --teacher-model llama3 --distractors 4\n\n"
                 "Reads .txt .md .pdf .docx .html.", RAFT_FIELDS)
    dr.add_argument("documents", nargs="+", metavar="DOC", help="document files or folders")

    e = sub.add_parser("estimate", help="rows, parameters, memory, steps and time for a config (JSON on stdout)",
                       **examples("ftspace estimate --config examples/facts.yaml",
                                  "ftspace estimate --dataset data.jsonl --model Qwen/Qwen2.5-0.5B-Instruct"))
    e.add_argument("--config", help="YAML file of RunConfig fields")
    e.add_argument("--set", action="append", metavar="KEY=VALUE")
    add_schema_flags(e, RunConfig)
    e.set_defaults(func=cmd_estimate)

    ev = sub.add_parser("eval", help="score a run's adapter against its base model on test rows and a general probe",
                        **examples("ftspace eval RUN", "ftspace eval RUN --checkpoint 20 --use",
                                   "ftspace eval RUN --test-dataset heldout.jsonl --json",
                                   "ftspace eval RUN --each-checkpoint"))
    ev.add_argument("run")
    ev.add_argument("--checkpoint", type=int, metavar="STEP", help="score the checkpoint saved at this step")
    ev.add_argument("--each-checkpoint", action="store_true",
                    help="score every kept checkpoint and the final adapter: the trade-off over training")
    ev.add_argument("--use", action="store_true",
                    help="then make that checkpoint (or, without --checkpoint, the final adapter) the one chat "
                         "and push use")
    ev.add_argument("--test-dataset", metavar="PATH", help="score these rows instead of the run's test split")
    ev.add_argument("--probe", metavar="FILE", help="a general-ability probe of your own (JSONL: question, answers)")
    ev.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS,
                    help=f"test rows scored at most (bounds the time on CPU; default {DEFAULT_MAX_ROWS})")
    ev.add_argument("--max-new-tokens", type=int, default=128, help="longest answer, in tokens (default 128)")
    ev.add_argument("--json", action="store_true", help="the whole scorecard as JSON on stdout")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=cmd_eval)

    sw = sub.add_parser("sweep", help="search learning rate, LoRA rank/alpha and epochs: each trial a short run, "
                        "scored on validation loss",
                        **examples("ftspace sweep --config examples/facts.yaml --set max_steps=-1 --trials 6",
                                   "ftspace sweep --resume SWEEP_ID"))
    sw.add_argument("--config", help="YAML file of RunConfig fields (the base every trial starts from)")
    sw.add_argument("--set", action="append", metavar="KEY=VALUE")
    sw.add_argument("--trials", type=int, default=8, help="trials to run (default 8)")
    sw.add_argument("--resume", metavar="SWEEP_ID", help="go on with a sweep after a restart or Ctrl-C")
    sw.add_argument("--json", action="store_true", help="the sweep's trials as JSON on stdout")
    add_schema_flags(sw, RunConfig)
    sw.set_defaults(func=cmd_sweep)

    demo = sub.add_parser("demo", help="teach the bundled model a new fact and compare it with the base model",
                          **examples("ftspace demo", "ftspace demo --set max_steps=10"))
    demo.add_argument("--set", action="append", metavar="KEY=VALUE")
    demo.set_defaults(func=cmd_demo)
    return p


def entry():
    """The installed `ftspace` command (pyproject.toml's entry point)."""
    sys.exit(main())


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except FtspaceError as e:
        err(f"error: {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
