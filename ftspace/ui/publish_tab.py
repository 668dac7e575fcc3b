"""Publish tab: push the adapter (and optionally a merged model and a GGUF export) with a generated card; download
a zip; export GGUF (llama.cpp, Ollama, LM Studio), checked against the run, and download it."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from ftspace.errors import FtspaceError
from ftspace.ui.common import caller_of, login_name, on_space, own_run, owner_of, scratch_file, user_errors, \
    visitor_token


def build(ui: dict):
    gr.Markdown("Share a finished run: the adapter, its tokenizer and chat template, a model card with the "
                "settings, final losses and loss curve, and a usage snippet.")
    with gr.Row():
        ui["pub_run"] = gr.Dropdown([], label="Run", interactive=True, allow_custom_value=True)
        ui["pub_repo"] = gr.Textbox(label="Repository", placeholder="my-adapter or owner/my-adapter")
    with gr.Row():
        ui["pub_private"] = gr.Checkbox(value=True, label="Private")
        ui["pub_merged"] = gr.Checkbox(value=False, label="Also push the merged 16-bit model (as REPO-merged)")
    if on_space():
        ui["login"] = gr.LoginButton()
        ui["pub_token"] = gr.Textbox(visible=False)
    else:
        ui["pub_token"] = gr.Textbox(label="Hugging Face token (write access)", type="password",
                                     placeholder="empty: HF_TOKEN or your `hf auth login` token is used")
    with gr.Row():
        ui["pub_push"] = gr.Button("Push to the Hub", variant="primary")
        ui["pub_zip"] = gr.Button("Prepare adapter zip")
        ui["pub_download"] = gr.DownloadButton("Download zip", visible=False)
    ui["pub_result"] = gr.Markdown()
    with gr.Accordion("Run it anywhere: GGUF for llama.cpp, Ollama and LM Studio", open=True):
        gr.Markdown("One file with the run's chat template and stop tokens, and an Ollama Modelfile. Before it is "
                    "offered, it is read back and its answers compared with the run's: an export that does not "
                    "behave like the run is refused, with what differed.")
        with gr.Row():
            ui["pub_gguf_type"] = gr.Dropdown(gguf_types(), value="q8_0", label="GGUF type",
                                              info="q8_0: half the size of f16, answers as the run does; f16/bf16: "
                                                   "the merged weights as they are")
            ui["pub_gguf_push"] = gr.Checkbox(value=False, label="Also push this GGUF when pushing (as REPO-GGUF)")
        with gr.Row():
            ui["pub_export"] = gr.Button("Export GGUF")
            ui["pub_gguf_download"] = gr.DownloadButton("Download GGUF", visible=False)
        ui["pub_export_result"] = gr.Markdown(elem_id="pub-export-result")
    with gr.Accordion("Model card preview", open=True):
        ui["pub_card"] = gr.Markdown(elem_id="pub-card")


def wire(ui: dict):
    who = [ui["browser_id"]]

    @user_errors
    def push(browser_id, run_id, repo, private, merged, token_text, gguf_type="q8_0", gguf_push=False,
             request: gr.Request = None, oauth_token: gr.OAuthToken | None = None):
        from ftspace import hub

        # The token lives only for this request: never stored, logged or returned. On a Space it is the
        # visitor's own (signed in) or none: never the Space's HF_TOKEN secret.
        token = visitor_token(oauth_token, token_text)
        hub.require_token(token)
        run = _run(run_id, owner_of(request, browser_id))
        gguf = gguf_type if gguf_push else None
        if gguf:
            from ftspace import export

            export.check(run, gguf, token)  # a wrong type: before anything is created
        url = hub.push(run, repo, token, private=bool(private), merged=bool(merged), gguf=gguf)
        also = f" and [{url}-GGUF]({url}-GGUF)" if gguf else ""
        return f"Pushed to [{url}]({url}){also}", ""  # the second value clears the password field

    @user_errors
    def card(browser_id, run_id, repo, request: gr.Request):
        from ftspace import hub

        if not run_id:
            return ""
        run = _run(run_id, owner_of(request, browser_id))
        if not (run.adapter_dir / "adapter_config.json").exists():
            return f"Run {run.id} has no adapter yet ({run.status()['status']})."
        text = hub.model_card(run, repo_for_card(repo, run.id, login_name(request))).split("---", 2)[2]
        png = hub.loss_curve_png(run)  # the card's loss_curve.png, which the preview cannot fetch: inline it
        if png:
            import base64

            text = text.replace("](loss_curve.png)", f"](data:image/png;base64,{base64.b64encode(png).decode()})")
        return text

    @user_errors
    def zip_adapter(browser_id, run_id, request: gr.Request):
        from ftspace import hub

        run = _run(run_id, owner_of(request, browser_id))
        path = scratch_file("zip", f"{run.id}-adapter.zip", hub.adapter_zip(run))
        return gr.DownloadButton(value=path, visible=True)

    @user_errors
    def export_gguf(browser_id, run_id, quant, request: gr.Request, oauth_token: gr.OAuthToken | None = None,
                    progress=gr.Progress()):
        import os

        from ftspace import export, targets

        caller = caller_of(request, browser_id, oauth_token)
        run = _run(run_id, caller.owner)
        report = targets.export_gguf(run, quant, caller,
                                     progress=lambda done, total, what: progress(done / total, desc=what))
        folder = Path(report["folder"])
        download = downloadable(folder / report["file"])
        modelfile = (folder / "Modelfile").read_text(encoding="utf-8") if (folder / "Modelfile").exists() else ""
        size = os.path.getsize(download) / 1e6
        text = (f"**{report['file']}** ({size:.0f} MB, {report['architecture']}), checked against the run:\n\n"
                + "\n".join(f"- {line}" for line in export.parity_lines(report["parity"], report.get("ollama")))
                + "\n\nRun it with Ollama: save the Modelfile below next to the file, then `ollama create my-model "
                "-f Modelfile` and `ollama run my-model`. llama.cpp: `llama-cli -m " + report["file"] + " -cnv "
                "--jinja`. LM Studio: `lms import " + report["file"] + "`.\n\n```\n" + modelfile + "```")
        return gr.DownloadButton(value=download, visible=True), text

    # The GGUF choices come last: callers of the API that name the first six (as before the export) keep working.
    ui["pub_push"].click(push, who + [ui["pub_run"], ui["pub_repo"], ui["pub_private"], ui["pub_merged"],
                                      ui["pub_token"], ui["pub_gguf_type"], ui["pub_gguf_push"]],
                         [ui["pub_result"], ui["pub_token"]], concurrency_id="hub", api_name="push")
    ui["pub_export"].click(export_gguf, who + [ui["pub_run"], ui["pub_gguf_type"]],
                           [ui["pub_gguf_download"], ui["pub_export_result"]], concurrency_id="export",
                           concurrency_limit=1, api_name="gguf")
    ui["pub_run"].change(card, who + [ui["pub_run"], ui["pub_repo"]], [ui["pub_card"]], api_name="card")
    ui["pub_repo"].change(card, who + [ui["pub_run"], ui["pub_repo"]], [ui["pub_card"]], api_visibility="private",
                          show_progress="hidden", trigger_mode="always_last")
    ui["pub_zip"].click(zip_adapter, who + [ui["pub_run"]], [ui["pub_download"]], api_name="zip")


def gguf_types() -> list[str]:
    """The GGUF types this machine can write: k-quants only where llama.cpp's quantizer is installed."""
    from ftspace.export import K_QUANTS, QUANTS, quantizer

    return list(QUANTS) + (list(K_QUANTS) if quantizer() else [])


def downloadable(path: Path) -> str:
    """`path` where a download button may serve it (Gradio serves the temp folder, never the runs): a hard link
    when the two share a disk, else a copy; one kept per file name."""
    import os
    import shutil
    import tempfile

    folder = Path(tempfile.gettempdir()) / "ftspace-gguf" / path.parent.parent.parent.name
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    target.unlink(missing_ok=True)
    try:
        os.link(path, target)
    except OSError:
        shutil.copyfile(path, target)
    return str(target)


def repo_for_card(repo: str | None, run_id: str, user: str | None = None) -> str:
    """The repository the usage snippet names: the one typed ("name" lands under the signed-in account, or
    "you/" when the app cannot know it yet), else a placeholder named after the run.

    >>> repo_for_card("my-adapter", "r1", "alice"), repo_for_card("org/x", "r1"), repo_for_card("", "r1")
    ('alice/my-adapter', 'org/x', 'you/r1')
    """
    repo = (repo or "").strip()
    if not repo:
        return f"{user or 'you'}/{run_id}"
    return repo if "/" in repo else f"{user or 'you'}/{repo}"


def _run(run_id, owner):
    if not run_id:
        raise FtspaceError("Pick a finished run to publish.")
    return own_run(run_id, owner)
