"""Create section of the Dataset tab: a teacher writes a dataset from a few examples or from documents.

The controls are generated from CreateSettings (the CLI's `data synth` / `data raft` flags come from the
same fields). The work runs in a thread of this request; its progress streams to the page, Stop ends
it after the requests in flight, and "Use this dataset" hands the file to the Dataset tab's check
(which fills the Train tab's dataset).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import fields

import gradio as gr

from ftspace import targets
from ftspace.config import DATA_SUFFIXES
from ftspace.access import teacher_key
from ftspace.owners import prune_uploads, shown_dataset
from ftspace.data.create.settings import RAFT_FIELDS, SYNTH_FIELDS, TEACHER_FIELDS, CreateSettings
from ftspace.errors import DataError
from ftspace.ui.common import caller_of, control_for, owner_of, owner_uploads, user_errors, visitor_token

MODES = {"From a few examples": "synth", "From documents (RAFT)": "raft"}
FIELDS = [f for f in fields(CreateSettings)]
PREVIEW_ROWS = 20
STOPS: dict[str, threading.Event] = {}  # owner -> the stop flag of their creation in progress


def build(ui: dict):
    with gr.Accordion("Create a dataset with a teacher model", open=False):
        gr.Markdown("No data yet? A **teacher** model writes it: many question/answer pairs in the style of a few "
                    "you give, or RAFT rows from your documents (a question, the passage that answers it among "
                    "others that do not, and an answer quoting it). The bundled teacher works offline but writes "
                    "poor rows (it shows the pipeline); for real data use an OpenAI-compatible server or Hugging "
                    "Face Inference Providers (billed to your own account).")
        ui["create_mode"] = gr.Radio(list(MODES), value=next(iter(MODES)), label="Create")
        controls = {}
        with gr.Row():
            for name in TEACHER_FIELDS[:3]:
                controls[name] = control_for(_field(name), CreateSettings)
            ui["teacher_key"] = gr.Textbox(label="API key (teacher 'openai'; used for this request only, never saved)",
                                           type="password")
        with gr.Accordion("Teacher limits", open=False), gr.Row():
            for name in TEACHER_FIELDS[3:]:
                controls[name] = control_for(_field(name), CreateSettings)
        with gr.Group(visible=True) as ui["synth_box"]:
            ui["seed_table"] = gr.Dataframe(headers=["question", "answer"], column_count=(2, "fixed"),
                                            row_count=(5, "dynamic"), type="array", interactive=True,
                                            label="Seed pairs: 5-10 examples of what you want (or upload a file)")
            with gr.Row():
                ui["seed_file"] = gr.File(label="Seed file (optional; any format the Dataset tab reads)",
                                          file_types=list(DATA_SUFFIXES), elem_id="seed-file")
                ui["context_files"] = gr.File(label="Context documents (optional)", file_count="multiple",
                                              file_types=[".txt", ".md", ".pdf", ".docx", ".html"])
            with gr.Row():
                for name in SYNTH_FIELDS:
                    if name not in TEACHER_FIELDS and _field(name).metadata["group"] == "synth":
                        controls[name] = control_for(_field(name), CreateSettings)
        with gr.Group(visible=False) as ui["raft_box"]:
            ui["doc_files"] = gr.File(label="Documents (.txt .md .pdf .docx .html)", file_count="multiple",
                                      file_types=[".txt", ".md", ".pdf", ".docx", ".html"])
            with gr.Row():
                for name in RAFT_FIELDS:
                    if _field(name).metadata["group"] == "raft":
                        controls[name] = control_for(_field(name), CreateSettings)
        with gr.Accordion("Filters", open=False), gr.Row():
            for name in SYNTH_FIELDS:
                if _field(name).metadata["group"] == "filters":
                    controls[name] = control_for(_field(name), CreateSettings)
        with gr.Row():
            ui["create_preview_btn"] = gr.Button("Preview cost and time")
            ui["create_btn"] = gr.Button("Create", variant="primary")
            ui["create_stop"] = gr.Button("Stop", variant="stop")
            ui["create_use"] = gr.Button("Use this dataset →", interactive=False)
        ui["create_status"] = gr.Markdown()
        ui["create_rows"] = gr.Dataframe(headers=["question", "answer"], label="Created rows (first 20)", wrap=True,
                                          elem_id="create-rows")
        ui["created"] = gr.State("")
    ui["create_controls"] = [controls[f.name] for f in FIELDS]


def wire(ui: dict, then_inspect):
    hidden = dict(api_visibility="private")
    ui["create_mode"].change(lambda m: (gr.Group(visible=MODES[m] == "synth"), gr.Group(visible=MODES[m] == "raft")),
                             [ui["create_mode"]], [ui["synth_box"], ui["raft_box"]], **hidden)
    inputs = [ui["browser_id"], ui["create_mode"], ui["seed_table"], ui["seed_file"], ui["context_files"],
              ui["doc_files"], ui["teacher_key"]] + ui["create_controls"]
    ui["create_preview_btn"].click(preview, inputs, [ui["create_status"]], api_name="create_preview")
    ui["create_btn"].click(create, inputs, [ui["create_status"], ui["create_rows"], ui["created"], ui["create_use"]],
                           api_name="create", concurrency_limit=4)
    # Stop ends the work gracefully (the rows kept so far are written), so it sets a flag, not `cancels=`
    ui["create_stop"].click(stop, [ui["browser_id"]], None, api_name="create_stop", concurrency_limit=None)
    then_inspect(ui["create_use"].click(lambda shown: shown, [ui["created"]], [ui["data_source"]],
                                        api_name="create_use"))


def _field(name):
    return next(f for f in FIELDS if f.name == name)


def _settings(values) -> CreateSettings:
    return CreateSettings.from_dict({f.name: v for f, v in zip(FIELDS, values)})


def _inputs(caller, mode, table, seed_file, context_files, doc_files, settings):
    """What the teacher works from, read here (files as this request uploaded them), through the gate."""
    from ftspace.data.create import raft, synth
    from ftspace.data.create.documents import document_files, read_document

    if mode == "synth":
        seeds, columns = (synth.read_seeds(seed_file) if seed_file else (synth.seeds_from_table(table), None))
        if not seeds:
            raise DataError("No seed pairs: type 5-10 question/answer pairs into the table, or upload a file of them.")
        context = [read_document(f) for f in document_files(context_files)] if context_files else []
        targets.admit_creation(settings, mode, len(seeds), 0, caller)
        return dict(seeds=seeds, columns=columns, context=context)
    if not doc_files:
        raise DataError("No documents: upload .txt, .md, .pdf, .docx or .html files to make questions from.")
    chunks, documents = raft.load_chunks(list(doc_files), settings)
    targets.admit_creation(settings, mode, 0, raft.chunks_used(len(chunks), settings), caller)
    return dict(paths=list(doc_files), chunks=chunks, documents=documents)


@user_errors
def preview(browser_id, mode, table, seed_file, context_files, doc_files, key, *values, request: gr.Request = None):
    from ftspace.data.create import describe_preview, preview as estimate, raft

    settings, mode = _settings(values), MODES[mode]
    given = _inputs(caller_of(request, browser_id), mode, table, seed_file, context_files, doc_files, settings)
    if mode == "synth":
        return describe_preview(estimate(settings, "synth", len(given["seeds"])))
    chunks, documents = given["chunks"], given["documents"]
    return (f"{raft.describe_chunks(chunks, documents, settings)}. "
            + describe_preview(estimate(settings, "raft", 0, chunks=raft.chunks_used(len(chunks), settings))))


@user_errors
def create(browser_id, mode, table, seed_file, context_files, doc_files, key, *values, request: gr.Request = None,
           oauth_token: gr.OAuthToken | None = None, progress=gr.Progress()):
    from ftspace.data.create import raft, synth, write_rows
    from ftspace.data.create.teacher import Teacher

    caller = caller_of(request, browser_id, oauth_token)
    owner = caller.owner
    settings, mode = _settings(values), MODES[mode]
    given = _inputs(caller, mode, table, seed_file, context_files, doc_files, settings)
    teacher = Teacher(settings, key=teacher_key(key) if settings.teacher == "openai" else None,
                      token=visitor_token(oauth_token) if settings.teacher == "hf" else None)
    evaluation = synth.eval_questions(settings.eval_dataset) if settings.eval_dataset else []
    stop = STOPS[owner] = threading.Event()
    updates: queue.Queue = queue.Queue()
    result: dict = {}

    def work():
        try:
            report_progress = lambda done, total, what: updates.put((done, total, what))  # noqa: E731
            if mode == "synth":
                pairs, report = synth.synthesize(settings, teacher, given["seeds"], context=given["context"],
                                                 evaluation=evaluation, progress=report_progress, stop=stop)
                result["rows"], result["report"] = synth.as_rows(pairs, given["columns"]), report
            else:
                result["rows"], result["report"] = raft.build(settings, teacher, given["chunks"],
                                                              documents=given["documents"],
                                                              evaluation=evaluation, progress=report_progress,
                                                              stop=stop)
        except Exception as e:  # handed to the request, which raises it at the boundary
            result["error"] = e
        finally:
            updates.put(None)

    threading.Thread(target=work, daemon=True).start()
    progress(0, desc="asking the teacher")
    while (item := updates.get()) is not None:
        done, total, what = item
        progress((done, total), desc=what)
    STOPS.pop(owner, None)
    if "error" in result:
        raise result["error"]
    rows, report = result["rows"], result["report"]
    if not rows:
        return (f"**No rows kept.**\n\n```\n{report.summary()}\n```", None, "", gr.Button(interactive=False))
    folder = owner_uploads(owner) / f"created-{time.strftime('%Y%m%d-%H%M%S')}"
    path = write_rows(rows, folder / f"{mode}-{time.strftime('%Y%m%d-%H%M%S')}.jsonl", report)
    prune_uploads(owner, path)  # kept like an upload: within this caller's count and bytes
    table_rows = [_shown(row) for row in rows[:PREVIEW_ROWS]]
    return (f"**{report.kept} rows written to {path.name}.**\n\n```\n{report.summary()}\n```", table_rows,
            shown_dataset(str(path)), gr.Button(interactive=True))


def _shown(row: dict) -> list[str]:
    if "messages" in row:
        msgs = row["messages"]
        user = next(m["content"] for m in msgs if m["role"] == "user")
        return [user[-400:], msgs[-1]["content"]]
    q, a = [v for k, v in row.items() if k != "provenance"][:2]
    return [q, a]


def stop(browser_id, request: gr.Request = None):
    event = STOPS.get(owner_of(request, browser_id))
    if event is not None:
        event.set()
