"""The Train tab's Sweep section: a small search over learning rate, LoRA rank/alpha and epochs, each trial an
ordinary run in the queue, scored on validation loss; a table and a plot of the trials; the best config one
click away. A sweep is a file: closing the page pauses it, Resume goes on."""

from __future__ import annotations

import queue
import threading

import gradio as gr

from ftspace import sweep as sweeps
from ftspace import env, targets
from ftspace.errors import FtspaceError
from ftspace.ui.common import caller_of, config_fields, owner_of, user_errors


def build(ui: dict):
    with gr.Accordion("Sweep: let a search pick learning rate, LoRA rank and epochs", open=False):
        gr.Markdown("Runs several short trials from the settings on the left (Optuna's TPE search over "
                    "learning_rate, lora_r/lora_alpha and num_train_epochs; each trial keeps 10% of the rows for "
                    "validation unless you set validation_size, and stops early when its eval loss stops "
                    "improving). Trials queue like any run. The best trial has the lowest validation loss.")
        with gr.Row():
            ui["sweep_trials"] = gr.Number(6, label="Trials", precision=0, minimum=1, maximum=50)
            ui["sweep_start"] = gr.Button("Start sweep")
            ui["sweep_id"] = gr.Dropdown([], label="Sweep", allow_custom_value=True, interactive=True)
            ui["sweep_resume"] = gr.Button("Resume sweep")
        ui["sweep_table"] = gr.Dataframe(headers=sweeps.COLUMNS, interactive=False, label="Trials",
                                         elem_id="sweep-table")
        ui["sweep_plot"] = gr.ScatterPlot(x="trial", y="best eval loss", color="lora_r", height=220,
                                          label="Validation loss by trial")
        ui["sweep_best"] = gr.Button("Use the best trial's settings")


def wire(ui: dict, scheduler, controls: list, who: list, visitor_config):
    outputs = [ui["sweep_id"], ui["sweep_table"], ui["sweep_plot"]]

    @user_errors
    def start(request: gr.Request, oauth_token: gr.OAuthToken | None, browser_id, trials, *values):
        """Start a sweep from these settings; the trials' table and plot update as trials finish."""
        refuse_on_zerogpu()
        caller, cfg = visitor_config(request, browser_id, values, oauth_token)
        cfg = targets.admit_sweep(cfg, int(trials or 1), caller)
        sweep = sweeps.create(cfg, int(trials or 1), owner=caller.owner)
        yield from follow(sweep, targets.Gated(scheduler, caller), caller.token, caller.owner)

    @user_errors
    def resume(browser_id, sweep_id, request: gr.Request, oauth_token: gr.OAuthToken | None = None):
        """Go on with a paused sweep of yours (after a restart or a closed page)."""
        refuse_on_zerogpu()
        caller = caller_of(request, browser_id, oauth_token)
        yield from follow(own_sweep(sweep_id, caller.owner), targets.Gated(scheduler, caller), caller.token,
                          caller.owner)

    @user_errors
    def use_best(browser_id, sweep_id, request: gr.Request):
        """The best trial's config, into the controls on the left."""
        cfg = own_sweep(sweep_id, owner_of(request, browser_id)).best_config()
        values = cfg.to_dict()
        return [gr.update(value=",".join(values[f.name]) if isinstance(values[f.name], list) else values[f.name])
                for f in config_fields()]

    ui["sweep_start"].click(start, who + [ui["sweep_trials"]] + controls, outputs, concurrency_id="sweep",
                            concurrency_limit=None, api_name="sweep")
    ui["sweep_resume"].click(resume, who + [ui["sweep_id"]], outputs, concurrency_id="sweep",
                             concurrency_limit=None, api_name="sweep_resume")
    ui["sweep_best"].click(use_best, who + [ui["sweep_id"]], controls, api_name="sweep_best")
    @user_errors
    def show(browser_id, sweep_id, request: gr.Request):
        return shown(own_sweep(sweep_id, owner_of(request, browser_id)).read()) if sweep_id else (gr.update(), None,
                                                                                                  None)

    ui["sweep_id"].change(show, who + [ui["sweep_id"]], outputs, api_visibility="private")


def refuse_on_zerogpu():
    if env.on_zerogpu():
        raise FtspaceError("Sweeps run several trainings one after another: too long for a ZeroGPU quota. Run "
                           "one on your own machine (ftspace sweep) or duplicate this Space onto "
                           "dedicated hardware.")


def own_sweep(sweep_id: str, owner: str) -> sweeps.Sweep:
    sweep = sweeps.get(sweep_id)
    if sweep.read().get("owner") != owner:
        raise FtspaceError(f"No sweep '{sweep_id}' of yours.")
    return sweep


def shown(data: dict):
    import pandas as pd

    rows = sweeps.table(data)
    plot = pd.DataFrame([{"trial": r[0], "best eval loss": r[6], "lora_r": str(r[2])} for r in rows
                         if r[6] is not None]) if rows else None
    return gr.update(value=data["id"]), rows or None, plot


def follow(sweep: sweeps.Sweep, scheduler, token, owner):
    """Run the sweep on a thread, yielding the table after each change; a closed page pauses it."""
    updates: queue.Queue = queue.Queue()
    stop = threading.Event()
    errors = []

    def work():
        try:
            sweeps.run_sweep(sweep, scheduler, token, on_update=lambda data, trial: updates.put(data), stop=stop)
        except Exception as e:  # shown to the visitor below
            errors.append(e)
        updates.put(None)

    threading.Thread(target=work, daemon=True, name="ftspace-sweep").start()
    _, rows, plot = shown(sweep.read())
    yield gr.Dropdown(choices=[s.id for s in sweeps.list_sweeps(owner)], value=sweep.id), rows, plot
    try:
        while (data := updates.get()) is not None:
            yield shown(data)
    finally:
        stop.set()
    if errors:
        raise errors[0]
    yield shown(sweep.read())
