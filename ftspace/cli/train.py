"""Start, follow, resume, stop and list runs, and estimate one before it starts: `ftspace train`, `resume`, `stop`,
`runs`, `status`, `estimate`."""

from __future__ import annotations

import contextlib
import json
import sys
import time

from ftspace import env, quiet
from ftspace.cli.common import add_run_argument, add_schema_flags, err, examples, schema_values
from ftspace.errors import FtspaceError


def add_commands(sub) -> None:
    from ftspace.config import RunConfig

    t = sub.add_parser("train", help="start a run and follow it (the run folder is the last line on stdout)",
                       **examples("ftspace train --config examples/facts.yaml",
                                  "ftspace train --dataset data.jsonl --max-steps 60 --lora-r 32",
                                  "ftspace train --config run.yaml --set learning_rate=1e-4",
                                  "ftspace train --dataset data.jsonl --preset balanced",
                                  "ftspace train --config run.yaml --train-on hf_jobs --flavor a10g-large   # on "
                                  "Hugging "
                                  "Face Jobs, billed to your account",
                                  "ftspace train --dataset example:arithmetic --method grpo --rewards "
                                  "correct_answer,length:0.5 --reward-max-words 3   # learning by reward"))
    from ftspace.rewards import describe

    t.epilog += "\nrewards (method grpo; --rewards NAME or NAME:WEIGHT, comma-separated):\n" + "".join(
        f"  {line}\n" for line in describe())
    t.add_argument("--config", help="YAML file of RunConfig fields")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field (repeatable)")
    add_preset_flag(t)
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    add_schema_flags(t, RunConfig)
    t.set_defaults(func=cmd_train)

    r = sub.add_parser("resume", help="continue an interrupted or stopped run from its last checkpoint (a run on "
                       "Hugging Face Jobs: on a new job; one whose job still runs: follow it again)",
                       **examples("ftspace resume RUN", "ftspace resume RUN --quiet"))
    add_run_argument(r)
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_resume)

    s = sub.add_parser("stop", help="ask a running run to stop after the current step",
                       **examples("ftspace stop RUN", "ftspace stop RUN --wait"))
    add_run_argument(s)
    s.add_argument("--wait", action="store_true", help="wait until it has stopped")
    s.set_defaults(func=cmd_stop)

    ls = sub.add_parser("runs", help="list the runs in ./runs (or $FTSPACE_RUNS)",
                        **examples("ftspace runs", "ftspace runs --json   # id, status, step, total_steps, "
                                   "train_loss, eval_loss, created, error, model_name, dataset, lora_r, ..."))
    ls.add_argument("--json", action="store_true", help="a JSON list on stdout")
    ls.set_defaults(func=cmd_runs)

    st = sub.add_parser("status", help="one run: status, step, losses, adapter, checkpoints, folder",
                        **examples("ftspace status RUN", "ftspace status RUN --json"))
    add_run_argument(st)
    st.add_argument("--json", action="store_true", help="a JSON object on stdout")
    st.set_defaults(func=cmd_status)

    e = sub.add_parser("estimate", help="rows, parameters, memory, steps and time for a config (JSON on stdout)",
                       **examples("ftspace estimate --config examples/facts.yaml",
                                  "ftspace estimate --dataset data.jsonl --model Qwen/Qwen2.5-0.5B-Instruct"))
    e.add_argument("--config", help="YAML file of RunConfig fields")
    e.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field (repeatable)")
    add_preset_flag(e)
    add_schema_flags(e, RunConfig)
    e.set_defaults(func=cmd_estimate)


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
                    shown = {k: f"{event[k]:.4g}" for k in ("loss", "eval_loss", "reward", "tokens_per_s")
                             if k in event}
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


def add_preset_flag(parser) -> None:
    """--preset NAME: the app's presets (training shape only: never the model or the data)."""
    from ftspace.config import PRESETS

    parser.add_argument("--preset", choices=list(PRESETS), metavar="{" + ",".join(f"'{p}'" for p in PRESETS) + "}",
                        help="start from one of the app's presets (steps, learning rate, LoRA rank, batch, "
                             "validation...); a --config file's own fields, --set and flags win over it")


def config_from_args(args, base: dict | None = None):
    """RunConfig from --config YAML (or `base`), a --preset for the fields the file does not set, then --set
    pairs, then --field flags (the last wins)."""
    from ftspace.config import PRESETS, RunConfig, read_yaml
    from ftspace.schema import parse_overrides

    values = dict(base or {})
    written = {}
    if getattr(args, "config", None):
        written = read_yaml(args.config)
        values.update(RunConfig.from_dict(written).to_dict())
    if getattr(args, "preset", None):
        values.update({k: v for k, v in PRESETS[args.preset].items() if k not in written})
    values.update(parse_overrides(getattr(args, "set", None) or []))
    values.update(schema_values(args, RunConfig))
    return RunConfig.from_dict(values)


def cmd_train(args) -> int:
    from ftspace import targets
    from ftspace.access import hub_token
    from ftspace.targets.queue import Scheduler

    cfg = config_from_args(args)
    scheduler = Scheduler()
    run = targets.submit(scheduler, cfg, targets.Caller.local(hub_token()))  # HF_TOKEN or `hf auth login`
    return _follow_where_it_trains(run, args.quiet, scheduler, f"training {cfg.model_name} on {cfg.dataset}")


def _follow_where_it_trains(run, quiet: bool, scheduler, doing: str) -> int:
    """Say where the run trains, follow it to its end, and finish with the run folder on stdout."""
    from ftspace import targets

    if targets.target_for(run) == "jobs":  # followed by a thread of this process (targets.follow)
        job = run.read_status()["job"]
        err(f"run {run.id}: {doing} on Hugging Face Jobs ({job['flavor']}, billed to {job['namespace']}): job "
            f"{job['url']} (log: {run.log_path})")
        return finish(run, follow(run, quiet=quiet))
    err(f"run {run.id}: {doing} (log: {run.log_path})")
    return finish(run, follow(run, quiet=quiet, scheduler=scheduler))


def cmd_resume(args) -> int:
    from ftspace import runs, targets
    from ftspace.access import hub_token
    from ftspace.targets.queue import Scheduler

    run = runs.find(args.run)
    caller = targets.Caller.local(hub_token())
    if targets.target_for(run) == "jobs" and run.read_status().get("status") in runs.ACTIVE:
        err(f"run {run.id} is still training on Hugging Face Jobs ({run.read_status()['job']['url']}): following it")
        targets.follow(run, caller)  # its job still runs: follow it again from here
        return finish(run, follow(run, quiet=args.quiet))
    scheduler = Scheduler()
    targets.resume(scheduler, run, caller)  # on Hugging Face Jobs: a new job from the last checkpoint it pushed
    start = run.last_checkpoint().name if run.last_checkpoint() else "the start"
    return _follow_where_it_trains(run, args.quiet, scheduler, f"resuming from {start}")


def cmd_stop(args) -> int:
    from ftspace import runs, targets
    from ftspace.access import hub_token
    from ftspace.targets.queue import Scheduler

    run = runs.find(args.run)
    caller = targets.Caller.local(hub_token())
    on_jobs = targets.target_for(run) == "jobs"
    if on_jobs and not caller.token:
        raise FtspaceError("No Hugging Face token to cancel the job with: set HF_TOKEN or run `hf auth login`.")
    targets.stop(Scheduler(), run, caller)
    if on_jobs:
        err(f"cancelled the job of {run.id}: `ftspace resume {run.id}` continues from the last checkpoint it pushed")
    else:
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
    from ftspace import runs, targets
    from ftspace.access import hub_token

    run = runs.find(args.run)
    targets.refresh(run, targets.Caller.local(hub_token()))  # on Hugging Face Jobs: asks the Hub where it is
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


def cmd_estimate(args) -> int:
    from ftspace import targets
    from ftspace.access import hub_token
    from ftspace.planning import describe, plan

    cfg = config_from_args(args)
    quiet.preload()
    with contextlib.redirect_stdout(sys.stderr):
        out = plan(cfg.to_dict(), token=hub_token())
    line = None
    quote = targets.quote(out, cfg, targets.Caller.local(hub_token()))  # on Hugging Face Jobs: time and cost
    if quote:
        out["hf_jobs"] = quote
        line = quote["text"]
    err(describe(out, line).replace("**", ""))
    print(json.dumps(out, indent=1))
    return 0
