"""Publish tab: push the adapter (and optionally a merged model) with a generated card; download a zip."""

from __future__ import annotations

import gradio as gr

from ftspace.errors import FtspaceError
from ftspace.ui.common import login_name, on_space, own_run, owner_of, scratch_file, user_errors, visitor_token


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
    with gr.Accordion("Model card preview", open=True):
        ui["pub_card"] = gr.Markdown(elem_id="pub-card")


def wire(ui: dict):
    who = [ui["browser_id"]]

    @user_errors
    def push(browser_id, run_id, repo, private, merged, token_text, request: gr.Request,
             oauth_token: gr.OAuthToken | None = None):
        from ftspace import hub

        # The token lives only for this request: never stored, logged or returned. On a Space it is the
        # visitor's own (signed in) or none: never the Space's HF_TOKEN secret.
        token = visitor_token(oauth_token, token_text)
        hub.require_token(token)
        run = _run(run_id, owner_of(request, browser_id))
        url = hub.push(run, repo, token, private=bool(private), merged=bool(merged))
        return f"Pushed to [{url}]({url})", ""  # the second value clears the password field

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

    ui["pub_push"].click(push, who + [ui["pub_run"], ui["pub_repo"], ui["pub_private"], ui["pub_merged"],
                                      ui["pub_token"]], [ui["pub_result"], ui["pub_token"]], concurrency_id="hub",
                        api_name="push")
    ui["pub_run"].change(card, who + [ui["pub_run"], ui["pub_repo"]], [ui["pub_card"]], api_name="card")
    ui["pub_repo"].change(card, who + [ui["pub_run"], ui["pub_repo"]], [ui["pub_card"]], api_visibility="private",
                          show_progress="hidden", trigger_mode="always_last")
    ui["pub_zip"].click(zip_adapter, who + [ui["pub_run"]], [ui["pub_download"]], api_name="zip")


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
