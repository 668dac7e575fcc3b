"""Evaluate tab: the tuned and the base model on held-out test prompts and a general-ability probe, side by
side; where tuned got worse first; any kept checkpoint, and which one chat and publishing use."""

from __future__ import annotations

import threading

import gradio as gr

from ftspace import evaluation, targets
from ftspace.config import DATA_SUFFIXES
from ftspace.errors import FtspaceError
from ftspace.ui.common import AGAINST_BASE, caller_of, model_events_at_once, own_run, owner_of, user_errors, \
    visitor_tier

FINAL = "final (the adapter chat and publishing use)"
EXAMPLE_COLUMNS = ["prompt", "reference", "base answer", "tuned answer", "base score", "tuned score", "change"]
PROBE_COLUMNS = ["question", "accepted", "base answer", "tuned answer", "base right", "tuned right"]


def build(ui: dict):
    gr.Markdown("How much better is the tuned model than the base on **your task**, and what did it lose "
                "**elsewhere**? Both answer the run's held-out test rows (set `test_size` or `test_dataset` "
                "before training, or give a test set here) and a general-knowledge probe, greedily. On CPU, "
                f"at most {evaluation.DEFAULT_MAX_ROWS} test rows by default.")
    with gr.Row():
        ui["eval_run"] = gr.Dropdown([], label="Run", interactive=True, allow_custom_value=True)
        ui["eval_checkpoint"] = gr.Dropdown([FINAL], value=FINAL, label="Adapter", allow_custom_value=True)
        ui["eval_against"] = gr.Dropdown([AGAINST_BASE], value=AGAINST_BASE, label="Compare with",
                                         allow_custom_value=True, info="its base, or another run of yours on the "
                                         "same test rows")
        ui["eval_test"] = gr.Textbox(label="Test dataset (optional)", placeholder="the run's test rows; or "
                                     "example:NAME, a Hub id, or an upload below")
        ui["eval_upload"] = gr.File(label="Upload a test file", file_types=list(DATA_SUFFIXES), height=90)
    with gr.Row():
        ui["eval_max_rows"] = gr.Number(evaluation.DEFAULT_MAX_ROWS, label="Test rows at most", precision=0,
                                        minimum=1, maximum=5000)
        ui["eval_max_new"] = gr.Slider(8, 1024, value=128, step=8, label="max new tokens",
                                       info="Longest answer per prompt (greedy)")
        ui["eval_go"] = gr.Button("Evaluate", variant="primary")
        ui["eval_cancel"] = gr.Button("Cancel")
    ui["eval_summary"] = gr.Markdown(elem_id="eval-scorecard")
    ui["eval_table"] = gr.Dataframe(headers=["metric", "base", "tuned", "change"], label="Scorecard",
                                    interactive=False)
    ui["eval_examples"] = gr.Dataframe(headers=EXAMPLE_COLUMNS, label="Per example (where tuned got worse first)",
                                       interactive=False, wrap=True)
    ui["eval_tradeoff"] = gr.Dataframe(headers=evaluation.TRADEOFF_COLUMNS, interactive=False,
                                       label="Adapters of this run scored so far: the trade-off over training "
                                             "(score checkpoints to fill it; pick one below)")
    with gr.Accordion("General-ability probe, question by question", open=False):
        ui["eval_probe"] = gr.Dataframe(headers=PROBE_COLUMNS, interactive=False, wrap=True)
    with gr.Row():
        ui["eval_use"] = gr.Button("Chat and publish with this adapter")
        ui["eval_used"] = gr.Markdown()


def wire(ui: dict):
    hidden = dict(api_visibility="private")
    ui["eval_run"].change(checkpoints, [ui["browser_id"], ui["eval_run"]], [ui["eval_checkpoint"], ui["eval_tradeoff"]],
                          **hidden)
    ui["eval_upload"].upload(_upload, [ui["eval_upload"], ui["browser_id"]], [ui["eval_test"]], **hidden)
    outputs = [ui["eval_summary"], ui["eval_table"], ui["eval_examples"], ui["eval_probe"], ui["eval_tradeoff"]]
    event = ui["eval_go"].click(run_evaluation, [ui["browser_id"], ui["eval_run"], ui["eval_checkpoint"],
                                                 ui["eval_test"], ui["eval_max_rows"], ui["eval_max_new"],
                                                 ui["eval_against"]],
                                outputs, concurrency_id="evaluate", concurrency_limit=model_events_at_once(),
                                api_name="evaluate")
    ui["eval_cancel"].click(cancel_evaluation, [ui["browser_id"]], None, cancels=[event], api_name="cancel_evaluation")
    ui["eval_use"].click(use_adapter, [ui["browser_id"], ui["eval_run"], ui["eval_checkpoint"]],
                         [ui["eval_used"], ui["eval_checkpoint"]], api_name="use_checkpoint")


def _upload(file_path, browser_id, request: gr.Request):
    from ftspace.ui.dataset_tab import accept_upload

    return accept_upload(file_path, browser_id, request)


def _step(choice: str) -> int | None:
    return int(choice.split("-")[1].split()[0]) if choice and choice.startswith("checkpoint-") else None


@user_errors
def checkpoints(browser_id, run_id, request: gr.Request):
    if not run_id:
        return gr.Dropdown(choices=[FINAL], value=FINAL), None
    run = own_run(run_id, owner_of(request, browser_id))
    chosen = run.status().get("adapter_checkpoint")
    choices = [FINAL] + [p.name for p in run.checkpoints()]
    return (gr.Dropdown(choices=choices, value=FINAL, info=f"in use: {chosen}" if chosen else None),
            evaluation.tradeoff(run) or None)


_CANCELS: dict[str, threading.Event] = {}  # the running evaluation of each owner, to cancel it


def cancel_evaluation(browser_id, request: gr.Request):
    """Cancel your running evaluation (nothing of it is saved)."""
    event = _CANCELS.get(owner_of(request, browser_id))
    if event is not None:
        event.set()


@user_errors
def run_evaluation(browser_id, run_id, checkpoint, test_dataset, max_rows, max_new, against: str = AGAINST_BASE,
                   request: gr.Request = None, progress=gr.Progress(), oauth_token: gr.OAuthToken | None = None,
                   profile: gr.OAuthProfile | None = None):
    """Score a finished run of yours: its adapter (or a kept checkpoint's) against the base model on held-out
    test rows and the general probe. Returns the scorecard (Markdown), the metric table, the per-example
    table (tuned worse first), the probe's answers and the run's scored adapters (checkpoints by step).
    `against` another run of yours: both runs on the same rows and probe, side by side (the Markdown holds the
    table; the other outputs stay empty)."""
    if not run_id:
        raise FtspaceError("Pick a run to evaluate.")
    caller = caller_of(request, browser_id, oauth_token)
    owner = caller.owner
    run = own_run(run_id, owner)
    other = own_run(against, owner) if against and against != AGAINST_BASE else None
    max_rows = int(max_rows or evaluation.DEFAULT_MAX_ROWS)
    test = targets.admit_evaluation(test_dataset, max_rows, caller)  # the gate
    options = evaluation.EvalOptions(checkpoint=_step(checkpoint), test_dataset=test, max_rows=max_rows,
                                     max_new_tokens=int(max_new))
    if options.checkpoint:
        run.checkpoint(options.checkpoint)
    cancel = _CANCELS[owner] = threading.Event()  # before the first progress: a Cancel seen after it must count
    progress(0, desc="loading the model")
    card = None
    with targets.model_slot(caller):  # one visitor holds at most their share of the model slots
        updates = targets.evaluation_updates(run, options, caller, visitor_tier(profile), cancel=cancel,
                                             against=other)
        for kind, *value in updates:
            if kind == "progress":
                done, total, what = value
                progress((done, total), desc=what, unit="answers")
            else:
                card = value[0]
    if other is not None:
        yield evaluation.comparison(card), None, None, None, evaluation.tradeoff(run)
        return
    yield *shown(card), evaluation.tradeoff(run)


def shown(card: dict):
    examples = [[e["prompt"], e["reference"], e["base"], e["tuned"], _num(e["base_score"]), _num(e["tuned_score"]),
                 _num(e["change"])] for e in card["examples"]]
    probe = [[p["question"], ", ".join(p["answers"]), p["base"], p["tuned"], bool(p["base_right"]),
              bool(p["tuned_right"])] for p in card["probe"]]
    return evaluation.summary(card, with_table=False), evaluation.table_rows(card), examples, probe


def _num(value):
    return None if value is None else round(value, 3)


@user_errors
def use_adapter(browser_id, run_id, checkpoint, request: gr.Request):
    """Make the chosen checkpoint (or the final adapter) the one Chat and Publish use for this run."""
    from ftspace.engine.saving import use_checkpoint

    if not run_id:
        raise FtspaceError("Pick a run first.")
    run = own_run(run_id, owner_of(request, browser_id))
    step = _step(checkpoint)
    if step:
        run.checkpoint(step)
    use_checkpoint(run, step)
    label = f"checkpoint-{step}" if step else "the final adapter"
    return f"Run **{run.id}** now chats and publishes with **{label}**.", gr.Dropdown(value=FINAL)

