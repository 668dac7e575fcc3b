"""Runs view: each run's date, status, method, steps, training time, key settings, final loss and score; the loss
curves of the runs picked, overlaid; open one in Evaluate, Chat or Publish; delete one (asked twice)."""

from __future__ import annotations

import time

import gradio as gr

from ftspace.owners import shown_dataset
from ftspace.ui.common import caller_of, open_in, own_run, owner_of, user_errors, visible_runs

COLUMNS = ["run", "status", "created", "method", "step", "training time", "model", "dataset", "lora_r",
           "learning_rate", "train loss", "score"]


def build(ui: dict):
    with gr.Row():
        ui["runs_refresh"] = gr.Button("Refresh")
        ui["runs_open_eval"] = gr.Button("Open selected in Evaluate")
        ui["runs_open_chat"] = gr.Button("Open selected in Chat")
        ui["runs_open_publish"] = gr.Button("Open selected in Publish")
        ui["runs_delete"] = gr.Button("Delete selected…", variant="stop")
    with gr.Row(visible=False) as confirm:
        ui["runs_confirm_text"] = gr.Markdown()
        ui["runs_confirm"] = gr.Button("Yes, delete it", variant="stop")
        ui["runs_cancel"] = gr.Button("Cancel", elem_id="runs-cancel")
    ui["runs_confirm_row"] = confirm
    ui["runs_selected"] = gr.Textbox(label="Selected run", interactive=False)
    ui["runs_table"] = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True, elem_id="runs-table")
    ui["runs_compare"] = gr.Dropdown([], multiselect=True, max_choices=MAX_COMPARED, allow_custom_value=True,
                                     label="Compare loss curves",
                                     info=f"pick up to {MAX_COMPARED} runs: their training loss, step by step")
    ui["runs_curves"] = gr.LinePlot(x="step", y="loss", color="run", color_title="run", height=300,
                                    label="Training loss of the runs picked", elem_id="runs-curves")


MAX_COMPARED = 6


def curves(owner: str, run_ids) -> list[dict]:
    """The training loss of each run picked (the caller's own: another's is 'No run'), one series per run."""
    points = []
    for run_id in list(run_ids or [])[:MAX_COMPARED]:
        run = own_run(run_id, owner)
        points += [{"step": e["step"], "loss": e["loss"], "run": run.id} for e in run.all_events() if "loss" in e]
    return points


def table(owner: str):
    rows = []
    for run in visible_runs(owner):
        s = run.summary()
        loss = lambda v: round(v, 4) if isinstance(v, float) else None  # noqa: E731
        rows.append([s["id"], s["status"], _date(s.get("created")), s.get("method"),
                     f"{s['step']}/{s['total_steps'] or '?'}", _took(s.get("seconds")), s.get("model_name"),
                     shown_dataset(s.get("dataset") or ""), s.get("lora_r"), s.get("learning_rate"),
                     loss(s.get("train_loss")), score_shown(s.get("score"))])
    return rows or None


def _date(created) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(created)) if isinstance(created, (int, float)) else ""


def _took(seconds) -> str:
    from ftspace.runs import duration_shown

    return duration_shown(seconds) if isinstance(seconds, (int, float)) and seconds > 0 else ""


def score_shown(score: dict | None) -> str:
    """
    >>> score_shown({"task_gain": 0.6031, "metric": "token_f1", "general_change": -0.02})
    'token F1 +0.603, general -0.020'
    >>> score_shown(None)
    'not evaluated'
    """
    if not score:
        return "not evaluated"
    from ftspace.evaluation.showing import METRIC_NAMES

    gain = score.get("task_gain")
    task = f"{METRIC_NAMES.get(score.get('metric'), score.get('metric'))} {gain:+.3f}" if isinstance(
        gain, (int, float)) else "scored"
    change = score.get("general_change")
    return task + (f", general {change:+.3f}" if isinstance(change, (int, float)) else "")


def wire(ui: dict, tabs):
    def refresh(browser_id, request: gr.Request):
        return table(owner_of(request, browser_id))

    def select(evt: gr.SelectData, data):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        try:
            return data.iloc[row, 0] if hasattr(data, "iloc") else data[row][0]
        except (IndexError, KeyError, TypeError):
            return ""

    def ask(run_id):
        if not run_id:
            return gr.Row(visible=False), "Pick a run in the table first."
        return gr.Row(visible=True), (f"Delete run **{run_id}** and every file in its folder (checkpoints, adapter, "
                                      "evaluations, exports)? What was pushed to the Hub stays there.")

    @user_errors
    def delete(run_id, browser_id, request: gr.Request):
        from ftspace import targets

        caller = caller_of(request, browser_id)
        targets.delete(own_run(run_id, caller.owner), caller)
        return gr.Row(visible=False), "", table(caller.owner)

    @user_errors
    def overlay(browser_id, run_ids, request: gr.Request):
        import pandas as pd

        points = curves(owner_of(request, browser_id), run_ids)
        return pd.DataFrame(points) if points else None

    def choices(data, picked):
        ids = [row[0] for row in (data.values.tolist() if hasattr(data, "values") else data or []) if row and row[0]]
        return gr.Dropdown(choices=ids, value=[i for i in (picked or []) if i in ids])

    hidden = dict(api_visibility="private")
    ui["runs_refresh"].click(refresh, [ui["browser_id"]], [ui["runs_table"]], api_name="runs")
    ui["runs_table"].change(choices, [ui["runs_table"], ui["runs_compare"]], [ui["runs_compare"]], queue=False,
                            show_progress="hidden", **hidden)
    ui["runs_compare"].change(overlay, [ui["browser_id"], ui["runs_compare"]], [ui["runs_curves"]],
                              show_progress="hidden", api_name="compare_runs")
    ui["runs_table"].select(select, [ui["runs_table"]], [ui["runs_selected"]], **hidden)
    ui["runs_open_eval"].click(open_in("evaluate"), [ui["runs_selected"], ui["browser_id"]],
                               [tabs, ui["eval_run"]], **hidden)
    ui["runs_open_chat"].click(open_in("chat"), [ui["runs_selected"], ui["browser_id"]], [tabs, ui["chat_run"]],
                               **hidden)
    ui["runs_open_publish"].click(open_in("publish"), [ui["runs_selected"], ui["browser_id"]],
                                  [tabs, ui["pub_run"]], **hidden)
    ui["runs_delete"].click(ask, [ui["runs_selected"]], [ui["runs_confirm_row"], ui["runs_confirm_text"]], **hidden)
    ui["runs_cancel"].click(lambda: (gr.Row(visible=False), ""), None,
                            [ui["runs_confirm_row"], ui["runs_confirm_text"]], **hidden)
    ui["runs_confirm"].click(delete, [ui["runs_selected"], ui["browser_id"]],
                             [ui["runs_confirm_row"], ui["runs_selected"], ui["runs_table"]], api_name="delete_run")
    return refresh
