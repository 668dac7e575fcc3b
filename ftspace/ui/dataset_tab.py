"""Dataset tab: upload, Hub or bundled example -> detected format, mapping, preview, report, token lengths."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import gradio as gr

from ftspace import offload, targets
from ftspace.owners import keep_upload, shown_dataset
from ftspace.config import DATA_SUFFIXES, RunConfig
from ftspace.data import bundled_examples
from ftspace.data.formats import NOTE_PROMPTS
from ftspace.errors import DataError
from ftspace.ui import create_panel
from ftspace.ui.common import UPLOAD_LIMIT_MB, caller_of, owner_of, user_errors, visitor_token

FORMATS = next(f.metadata["choices"] for f in fields(RunConfig) if f.name == "dataset_format")
PREFERENCE_CHOICES = {"imitating the chosen replies (SFT)": "sft",
                      "preferring chosen over rejected replies (DPO)": "dpo",
                      "preferring chosen over rejected, no reference model (ORPO)": "orpo"}
PROMPT_CHOICES = {"imitating the answers (SFT)": "sft", "earning rewards for its own replies (GRPO)": "grpo"}
METHOD_CHOICES = {**PREFERENCE_CHOICES, **PROMPT_CHOICES}
INSPECT_ROWS = 5000  # rows read for the report and histogram; training reads them all


def build(ui: dict):
    gr.Markdown("Bring your data: a file, a Hub dataset or a bundled example. It is checked and converted "
                "to chat messages; rows that cannot be used are listed with the reason.")
    with gr.Row():
        with gr.Column():
            ui["upload"] = gr.File(label=f"Upload a file ({' '.join(DATA_SUFFIXES)}, up to "
                                         f"{UPLOAD_LIMIT_MB} MB)", elem_id="data-upload",
                                   file_types=list(DATA_SUFFIXES))
        with gr.Column():
            ui["example"] = gr.Dropdown(list(bundled_examples()), value="facts", label="Bundled example")
            ui["use_example"] = gr.Button("Use example")
        with gr.Column():
            ui["hub_id"] = gr.Textbox(label="Hub dataset id", placeholder="owner/name")
            ui["use_hub"] = gr.Button("Load from Hub")
            with gr.Row():  # filled from the dataset's card and files when it is loaded; a pick re-checks
                ui["hub_config"] = gr.Dropdown([], label="config", scale=1, allow_custom_value=True)
                ui["hub_split"] = gr.Dropdown(["train"], value="train", label="split", scale=1,
                                              allow_custom_value=True)
            ui["hub_layout"] = gr.State({})
    with gr.Row():
        ui["data_source"] = gr.Textbox(label="Dataset in use", value="example:facts", interactive=False)
        ui["data_format"] = gr.Dropdown(FORMATS, value="auto", label="Format (detected, or override)")
        ui["prompt_col"] = gr.Textbox(label="prompt column (format 'columns')")
        ui["response_col"] = gr.Textbox(label="response column (format 'columns')")
        ui["inspect"] = gr.Button("Check again", variant="secondary")
    ui["data_summary"] = gr.Markdown()
    ui["to_train"] = gr.Button("Train on this dataset →", variant="primary")
    ui["preference_choice"] = gr.Radio(list(PREFERENCE_CHOICES), value=next(iter(PREFERENCE_CHOICES)), visible=False,
                                       label="Preference data: learn from it by (sets the Train tab's method)")
    with gr.Row():
        ui["token_hist"] = gr.BarPlot(x="tokens", y="examples", color="fits", label="Tokens per example",
                                      height=260)
        ui["masked_example"] = gr.HighlightedText(label="First example through the chat template: trained tokens "
                                                        "highlighted, masked ones plain", combine_adjacent=True,
                                                  color_map={"trained": "green"})
    with gr.Accordion("Converted conversations (first 3)", open=False):
        ui["preview"] = gr.JSON()
    ui["dropped"] = gr.Dataframe(headers=["row", "field", "reason"], label="Dropped rows", wrap=True)
    create_panel.build(ui)


def wire(ui: dict):
    inspect_inputs = [ui["browser_id"], ui["data_source"], ui["data_format"], ui["prompt_col"], ui["response_col"],
                      ui["model_name"], ui["max_seq_length"]]
    outputs = [ui["data_summary"], ui["token_hist"], ui["masked_example"], ui["preview"], ui["dropped"],
               ui["dataset"], ui["dataset_format"], ui["prompt_column"], ui["response_column"], ui["train_dataset"],
               ui["preference_choice"]]

    hidden = dict(api_visibility="private")
    ui["upload"].upload(accept_upload, [ui["upload"], ui["browser_id"]], [ui["data_source"]], api_name="upload").success(
        inspect, inspect_inputs, outputs, **hidden)
    ui["use_example"].click(lambda name: f"example:{name}", [ui["example"]], [ui["data_source"]], **hidden).success(
        inspect, inspect_inputs, outputs, **hidden)
    hub_inputs = inspect_inputs + [ui["hub_config"], ui["hub_split"]]
    ui["use_hub"].click(hub_listing, [ui["hub_id"]], [ui["data_source"], ui["hub_layout"], ui["hub_config"],
                                                       ui["hub_split"], ui["dataset_config"], ui["dataset_split"]],
                        api_name="hub_listing").success(inspect, hub_inputs, outputs, api_name="inspect_hub")
    ui["hub_config"].input(pick_config, [ui["hub_layout"], ui["hub_config"]],
                           [ui["hub_split"], ui["dataset_config"], ui["dataset_split"]], **hidden).success(
        inspect, hub_inputs, outputs, **hidden)
    ui["hub_split"].input(lambda split: split, [ui["hub_split"]], [ui["dataset_split"]], **hidden).success(
        inspect, hub_inputs, outputs, **hidden)
    ui["inspect"].click(inspect, inspect_inputs, outputs, api_name="check")
    ui["to_train"].click(lambda: gr.Tabs(selected="train"), None, [ui["tabs"]], **hidden)
    # The choice sets the Train tab's method, also as a check sets it (prompts with nothing to imitate: GRPO);
    # data with no such choice trains by SFT
    ui["preference_choice"].change(lambda choice: METHOD_CHOICES.get(choice, "sft"), [ui["preference_choice"]],
                                   [ui["method"]], **hidden)
    create_panel.wire(ui, lambda event: event.success(inspect, inspect_inputs, outputs, **hidden))


@user_errors
def accept_upload(file_path: str | None, browser_id: str = "", request: gr.Request = None) -> str:
    """Keep the upload in its owner's folder under uploads/ (Gradio's temp files do not last); its path."""
    if not file_path:
        raise DataError("No file received: choose a file to upload.")
    src = Path(file_path)
    size_mb = src.stat().st_size / 2**20
    if size_mb > UPLOAD_LIMIT_MB:
        raise DataError(f"{src.name}: {size_mb:.0f} MB is over the {UPLOAD_LIMIT_MB} MB upload limit: "
                        "use a smaller file or a Hub dataset.")
    dest = keep_upload(owner_of(request, browser_id), src.name, src.parent.name[-16:], src=src)
    return shown_dataset(str(dest))  # its name, not where the server keeps it


@user_errors
def hub_listing(dataset_id: str, oauth_token: gr.OAuthToken | None = None, request: gr.Request = None):
    """A Hub dataset's configs and splits (from its card and file list, read with the visitor's token), for
    the dropdowns; the first config and its train split (or first split) are chosen. Rows are read after,
    streamed, only as many as the check needs."""
    dataset_id = (dataset_id or "").strip()
    if not dataset_id:
        raise DataError("Enter a Hub dataset id such as owner/name.")
    caller = caller_of(request, "", oauth_token)
    dataset_id = targets.admit_dataset(dataset_id, caller)  # the gate: a Hub id this visitor may read
    layout = offload.call("ftspace.data.load:hub_layout", dataset_id=dataset_id, token=caller.token)
    config = next(iter(layout), "")
    splits = layout.get(config) or ["train"]
    split = "train" if "train" in splits else splits[0]
    return (dataset_id, layout, gr.Dropdown(choices=list(layout), value=config), gr.Dropdown(choices=splits, value=split),
            config, split)


def pick_config(layout: dict, config: str):
    splits = (layout or {}).get(config) or ["train"]
    split = "train" if "train" in splits else splits[0]
    return gr.Dropdown(choices=splits, value=split), config, split


@user_errors
def inspect(browser_id, source, fmt, prompt_col, response_col, model_name, max_len, config="", split="train",
            request: gr.Request = None, oauth_token: gr.OAuthToken | None = None):
    caller = caller_of(request, browser_id, oauth_token)
    max_len = int(max_len or 1024)
    path, model_name = targets.admit_inspection(source, model_name, max_len, caller)  # the gate
    found = offload.call("ftspace.data.inspection:inspect_dataset", source=path, dataset_format=fmt or "auto",
                         prompt_column=prompt_col or "", response_column=response_col or "",
                         dataset_config=config or "", dataset_split=split or "train",
                         model_name=model_name or "default", max_seq_length=max_len, limit=INSPECT_ROWS,
                         token=visitor_token(oauth_token))
    report, stats, hist, highlighted = found["report"], found["report"]["tokens"], None, None
    if stats:
        table = _histogram(stats["lengths"], max_len)
        hist = gr.BarPlot(value=table, sort=list(table["tokens"])) if table is not None else None  # bins in order
        highlighted = [(text, "trained" if trained else None) for text, trained in found["first"]]
        if stats.get("windows"):
            docs = stats["documents"]
            tokens_line = (f"\n\n**Plain text for continued pre-training**: **{stats['windows']} windows** of at most "
                           f"{max_len} tokens from {docs} document{'s' if docs != 1 else ''} (stride "
                           f"{stats['stride']}); nothing is cut off.")
        else:
            tokens_line = (f"\n\n**Tokens per example** ({model_name}): min {stats['min']}, median {stats['p50']}, "
                           f"p95 {stats['p95']}, max {stats['max']}. **{stats['over_max_seq_length']}** of "
                           f"{stats['count']} exceed max_seq_length {max_len} and will be truncated.")
    else:
        tokens_line = f"\n\nToken statistics unavailable: {found['tokens_error']}"
    more = f" (first {INSPECT_ROWS} rows checked)" if report["rows_read"] >= INSPECT_ROWS else ""
    columns = ", ".join(map(str, report["columns"]))
    summary = (f"**{shown_dataset(path)}**: format **{report['format']}** (columns: {columns}). {report['rows_read']} "
               f"rows read{more}, **{report['rows_kept']} kept**, {report['rows_dropped']} dropped." + tokens_line)
    notes = ([f"read as {report['layout']}"] if report.get("layout") else []) + \
        [f"{count} {note}" for note, count in report.get("notes", {}).items()]
    if notes:
        summary += "\n\n" + "\n".join(f"- {note}" for note in notes)
    preference = report["format"] == "preference"
    prompts = report["format"] == "prompts" or bool(report.get("notes", {}).get(NOTE_PROMPTS))
    if preference:
        summary += ("\n\n**Preference data** (a prompt, a chosen and a rejected reply): train on the chosen replies "
                    "(SFT), or teach the model to prefer them with DPO or ORPO: choose below.")
        choice = gr.Radio(list(PREFERENCE_CHOICES), value=next(iter(PREFERENCE_CHOICES)), visible=True,
                          label="Preference data: learn from it by (sets the Train tab's method)")
    elif prompts:
        only = report["format"] == "prompts"  # no reply to imitate: GRPO is the way to learn from them
        summary += ("\n\n**Prompts with answers**: " + ("no reply to imitate, so the model learns by reward (GRPO): "
                    "it writes several replies to each prompt and is moved toward those the rewards score best; "
                    "choose the rewards in the Train tab." if only else "imitate the answers (SFT), or let the model "
                    "earn rewards for its own replies (GRPO; the rewards are chosen in the Train tab): choose below."))
        choice = gr.Radio(list(PROMPT_CHOICES), value=list(PROMPT_CHOICES)[1 if only else 0], visible=True,
                          label="Prompts with answers: learn from them by (sets the Train tab's method)")
    else:
        choice = gr.Radio(visible=False, value=None)
    dropped = [[d["row"], d["field"], d["reason"]] for d in report["dropped"]]
    chosen_fmt = fmt if fmt and fmt != "auto" else "auto"
    in_use = (f"**Dataset:** {shown_dataset(path)} · format **{report['format']}** · **{report['rows_kept']}** rows "
              f"kept{more} (checked in the Dataset tab)")
    return (summary, hist, highlighted, found["preview"], dropped or None, source, chosen_fmt,
            prompt_col or "", response_col or "", in_use, choice)


def _histogram(lengths: list[int], max_len: int):
    import pandas as pd

    if not lengths:
        return None
    top = max(max(lengths), max_len)
    width = max(1, -(-top // 20))
    bins: dict[int, int] = {}
    for n in lengths:
        bins[n // width * width] = bins.get(n // width * width, 0) + 1
    return pd.DataFrame([{"tokens": f"{start}-{start + width - 1}", "examples": count,
                          "fits": "fits" if start + width - 1 <= max_len else "over max_seq_length"}
                         for start, count in sorted(bins.items())])
