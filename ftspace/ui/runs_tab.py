"""Runs view: history with status, key settings and final loss; open a run in Chat or Publish."""

from __future__ import annotations

import gradio as gr

from ftspace.owners import shown_dataset
from ftspace.ui.common import open_in, owner_of, visible_runs

COLUMNS = ["run", "status", "step", "model", "dataset", "lora_r", "learning_rate", "train loss", "eval loss"]


def build(ui: dict):
    with gr.Row():
        ui["runs_refresh"] = gr.Button("Refresh")
        ui["runs_open_chat"] = gr.Button("Open selected in Chat")
        ui["runs_open_publish"] = gr.Button("Open selected in Publish")
    ui["runs_selected"] = gr.Textbox(label="Selected run", interactive=False)
    ui["runs_table"] = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True, elem_id="runs-table")


def table(owner: str):
    rows = []
    for run in visible_runs(owner):
        s = run.summary()
        loss = lambda v: round(v, 4) if isinstance(v, float) else None  # noqa: E731
        rows.append([s["id"], s["status"], f"{s['step']}/{s['total_steps'] or '?'}", s.get("model_name"),
                     shown_dataset(s.get("dataset") or ""), s.get("lora_r"), s.get("learning_rate"), loss(s.get("train_loss")),
                     loss(s.get("eval_loss"))])
    return rows or None


def wire(ui: dict, tabs):
    def refresh(browser_id, request: gr.Request):
        return table(owner_of(request, browser_id))

    def select(evt: gr.SelectData, data):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        try:
            return data.iloc[row, 0] if hasattr(data, "iloc") else data[row][0]
        except (IndexError, KeyError, TypeError):
            return ""

    hidden = dict(api_visibility="private")
    ui["runs_refresh"].click(refresh, [ui["browser_id"]], [ui["runs_table"]], api_name="runs")
    ui["runs_table"].select(select, [ui["runs_table"]], [ui["runs_selected"]], **hidden)
    ui["runs_open_chat"].click(open_in("chat"), [ui["runs_selected"], ui["browser_id"]], [tabs, ui["chat_run"]],
                               **hidden)
    ui["runs_open_publish"].click(open_in("publish"), [ui["runs_selected"], ui["browser_id"]],
                                  [tabs, ui["pub_run"]], **hidden)
    return refresh
