"""Score a run against its base model, and search settings with short trials: `ftspace eval`, `ftspace sweep`."""

from __future__ import annotations

import contextlib
import json
import sys

from ftspace import quiet
from ftspace.cli.common import add_run_argument, add_schema_flags, err, examples
from ftspace.cli.train import add_preset_flag, config_from_args


def add_commands(sub) -> None:
    from ftspace.config import SHORT_REPLY_TOKENS, RunConfig
    from ftspace.evaluation import DEFAULT_MAX_ROWS

    ev = sub.add_parser("eval", help="score a run's adapter against its base model on test rows and a general probe",
                        **examples("ftspace eval RUN", "ftspace eval RUN --checkpoint 20 --use",
                                   "ftspace eval RUN --test-dataset heldout.jsonl --json",
                                   "ftspace eval RUN --each-checkpoint", "ftspace eval RUN --against OTHER_RUN"))
    add_run_argument(ev)
    ev.add_argument("--checkpoint", type=int, metavar="STEP", help="score the checkpoint saved at this step")
    ev.add_argument("--each-checkpoint", action="store_true",
                    help="score every kept checkpoint and the final adapter: the trade-off over training")
    ev.add_argument("--against", metavar="OTHER_RUN",
                    help="also score another run on the same test rows and probe, and show the two side by side "
                         "(e.g. the same data tuned twice with other settings)")
    ev.add_argument("--use", action="store_true",
                    help="then make that checkpoint (or, without --checkpoint, the final adapter) the one chat "
                         "and push use")
    ev.add_argument("--test-dataset", metavar="PATH", help="score these rows instead of the run's test split")
    ev.add_argument("--probe", metavar="FILE", help="a general-ability probe of your own (JSONL: question, answers)")
    ev.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS,
                    help=f"test rows scored at most (bounds the time on CPU; default {DEFAULT_MAX_ROWS})")
    ev.add_argument("--max-new-tokens", type=int, default=SHORT_REPLY_TOKENS,
                    help=f"longest answer, in tokens (default {SHORT_REPLY_TOKENS})")
    ev.add_argument("--json", action="store_true", help="the whole scorecard as JSON on stdout")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=cmd_eval)

    sw = sub.add_parser("sweep", help="search learning rate, LoRA rank/alpha and epochs: each trial a short run, "
                        "scored on validation loss",
                        **examples("ftspace sweep --config examples/facts.yaml --set max_steps=-1 --trials 6",
                                   "ftspace sweep --resume SWEEP_ID"))
    sw.add_argument("--config", help="YAML file of RunConfig fields (the base every trial starts from)")
    sw.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field (repeatable)")
    add_preset_flag(sw)
    sw.add_argument("--trials", type=int, default=8, help="trials to run (default 8)")
    sw.add_argument("--resume", metavar="SWEEP_ID", help="go on with a sweep after a restart or Ctrl-C")
    sw.add_argument("--json", action="store_true", help="the sweep's trials as JSON on stdout")
    add_schema_flags(sw, RunConfig)
    sw.set_defaults(func=cmd_sweep)


def cmd_eval(args) -> int:
    from ftspace import runs
    from ftspace.access import hub_token
    from ftspace.evaluation import TRADEOFF_COLUMNS, EvalOptions, compare, comparison, evaluate, summary, tradeoff

    run = runs.find(args.run)
    if args.checkpoint:
        run.checkpoint(args.checkpoint)  # a wrong step fails before anything loads
    other = runs.find(args.against) if args.against else None
    if other and args.each_checkpoint:
        err("--against compares two runs' adapters: leave out --each-checkpoint")
        return 2
    steps = [int(p.name.split("-")[1]) for p in run.checkpoints()] + [None] if args.each_checkpoint else \
        [args.checkpoint]
    quiet.preload()

    def options(step):
        return EvalOptions(checkpoint=step, test_dataset=args.test_dataset or "", probe_file=args.probe or "",
                           max_rows=args.max_rows, max_new_tokens=args.max_new_tokens)

    cards, pair = [], None
    try:
        if other:  # both on RUN's test rows and the same probe
            pair = _with_bar(lambda progress: compare(run, other, options(args.checkpoint), hub_token(), progress),
                             lambda what: what, args.quiet)
            cards.append(pair["run"])
        else:
            for step in steps:
                cards.append(_with_bar(
                    lambda progress: evaluate(run, options(step), token=hub_token(), progress=progress),
                    lambda what, step=step: f"{f'checkpoint-{step}' if step else 'adapter'}: {what}", args.quiet))
    except KeyboardInterrupt:
        err("\nevaluation cancelled (Ctrl-C): nothing more was saved")
        return 130
    if args.use:
        from ftspace.engine.saving import use_checkpoint

        use_checkpoint(run, args.checkpoint)
        err(f"run {run.id} now chats and publishes with {cards[-1]['checkpoint']}")
    if pair:
        print(json.dumps(pair, indent=1, ensure_ascii=False) if args.json else comparison(pair).replace("**", ""))
        return 0
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


def _with_bar(work, label, quiet_bar: bool):
    """work(progress) with a progress bar on stderr (stdout is kept for the result); `label(what)` describes it."""
    from tqdm import tqdm

    bar = tqdm(total=1, desc="evaluating", unit="answer", file=sys.stderr, disable=quiet_bar or not sys.stderr.isatty())

    def progress(done, total, what):
        bar.total = total
        bar.set_description(label(what))
        bar.update(done - bar.n)

    try:
        with contextlib.redirect_stdout(sys.stderr):
            return work(progress)
    finally:
        bar.close()


def cmd_sweep(args) -> int:
    from ftspace import sweep as sweeps
    from ftspace.access import hub_token
    from ftspace.targets.queue import Scheduler

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
