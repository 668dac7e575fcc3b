"""The Gradio app: Dataset -> Train -> Evaluate -> Chat -> Publish, plus Runs, and the agents' tools (MCP).
Gradio lives here and in app.py only.

Building the app imports no torch, transformers, peft, trl or unsloth; handlers import them lazily.
"""

from __future__ import annotations

import secrets

import gradio as gr

from ftspace import access, env, owners, targets
from ftspace.targets.queue import Scheduler
from ftspace.ui import chat_tab, dataset_tab, eval_tab, mcp_tools, publish_tab, runs_tab, train_tab
from ftspace.ui.common import AGAINST_BASE, caller_of, owner_of, visible_runs

TITLE = "ftspace: fine-tune an LLM with Unsloth LoRA, no code"


def build_app(scheduler: Scheduler | None = None) -> gr.Blocks:
    check_address()
    from ftspace import chat

    # Chat models give back the GPU when a run starts; a completed run's model starts loading for chat
    scheduler = scheduler or Scheduler(before_launch=chat.release_gpu, on_finished=chat_tab.load_finished_run).start()
    if not env.multi_user():  # self-hosted: its Jobs runs are followed again with the machine's own token
        targets.follow_again(targets.Caller.local(access.hub_token()))
    ui: dict = {}
    with gr.Blocks(title="ftspace") as demo:
        gr.Markdown(f"## {TITLE}\nBring a dataset, train a LoRA adapter, chat with it next to the base model, "
                    "and share it on the Hub.")
        # A random id kept in this browser's localStorage: reloading the page finds your runs again.
        ui["browser_id"] = gr.BrowserState("", storage_key="ftspace_browser_id")
        with gr.Tabs() as tabs:
            with gr.Tab("1 · Dataset", id="dataset"):
                dataset_tab.build(ui)
            with gr.Tab("2 · Train", id="train"):
                train_tab.build(ui)
            with gr.Tab("3 · Evaluate", id="evaluate") as evaluate:
                eval_tab.build(ui)
            with gr.Tab("4 · Chat", id="chat") as chat:
                chat_tab.build(ui)
            with gr.Tab("5 · Publish", id="publish") as publish:
                publish_tab.build(ui)
            with gr.Tab("Runs", id="runs") as runs_view:
                runs_tab.build(ui)

        ui["tabs"] = tabs  # the next-step buttons switch tabs
        dataset_tab.wire(ui)
        train_tab.wire(ui, scheduler)
        eval_tab.wire(ui)
        chat_tab.wire(ui)
        publish_tab.wire(ui)
        refresh_table = runs_tab.wire(ui, tabs)

        def finished_ids(browser_id, request) -> list[str]:
            return [r.id for r in visible_runs(owner_of(request, browser_id))
                    if (r.adapter_dir / "adapter_config.json").exists()]

        def run_choice(ids: list[str], current):
            return gr.Dropdown(choices=ids, value=current if current in ids else (ids[0] if ids else None))

        def finished_runs(browser_id, current, request: gr.Request):
            return run_choice(finished_ids(browser_id, request), current)

        def finished_runs_and_others(browser_id, current, against, request: gr.Request):
            """The run picked and what it is put beside: its base, or another finished run of the visitor's."""
            ids = finished_ids(browser_id, request)
            return run_choice(ids, current), gr.Dropdown(choices=[AGAINST_BASE] + ids,
                                                         value=against if against in ids else AGAINST_BASE)

        hidden = dict(api_visibility="private")
        evaluate.select(finished_runs_and_others, [ui["browser_id"], ui["eval_run"], ui["eval_against"]],
                        [ui["eval_run"], ui["eval_against"]], **hidden)
        chat.select(finished_runs_and_others, [ui["browser_id"], ui["chat_run"], ui["chat_against"]],
                    [ui["chat_run"], ui["chat_against"]], **hidden)
        publish.select(finished_runs, [ui["browser_id"], ui["pub_run"]], [ui["pub_run"]], **hidden)
        runs_view.select(refresh_table, [ui["browser_id"]], [ui["runs_table"]], **hidden)

        def on_load(browser_id, request: gr.Request, oauth_token: gr.OAuthToken | None = None):
            if not browser_id:  # a new browser: what the page did before this (an upload) was the session's
                browser_id = secrets.token_hex(16)
                owners.adopt(owner_of(request, ""), owner_of(request, browser_id))
            run_dropdown, timer = train_tab.reattach(caller_of(request, browser_id, oauth_token))
            return browser_id, run_dropdown, timer

        demo.load(on_load, [ui["browser_id"]], [ui["browser_id"], ui["run_id"], ui["timer"]], **hidden)

        # Agents (MCP, and the documented API) get the tools of mcp_tools and nothing else; the tabs' endpoints
        # stay callable by the page (and gradio_client) but undocumented.
        tools = mcp_tools.register(scheduler)
        for fn in demo.fns.values():
            if fn.api_visibility == "public" and fn.api_name not in tools:
                fn.api_visibility = "undocumented"
    demo.ftspace_ui = ui  # the components, for tests
    demo.ftspace_scheduler = scheduler
    return demo


def serve(demo: gr.Blocks | None = None) -> None:
    """Serve the app until Ctrl-C: `python app.py` and `ftspace app` (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT,
    FTSPACE_MCP as documented there)."""
    from ftspace.ui.common import UPLOAD_LIMIT_MB

    demo = demo or build_app()
    demo.queue(**queue_settings()).launch(max_file_size=f"{UPLOAD_LIMIT_MB}mb", run_history=False,
                                          mcp_server=mcp_enabled())


def check_address() -> None:
    """A single-user app lends its visitors the server's Hub token and teacher key, so it listens on this machine
    only unless the owner says otherwise (FTSPACE_ALLOW_PUBLIC=1); a shared app (FTSPACE_MULTIUSER=1, a Space)
    may listen anywhere."""
    import ipaddress
    import os

    from ftspace.env import multi_user

    host = (os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1").strip()
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if not (loopback or multi_user() or os.environ.get("FTSPACE_ALLOW_PUBLIC") == "1"):
        raise SystemExit(f"GRADIO_SERVER_NAME={host}: a single-user ftspace lends every visitor this machine's Hugging "
                         "Face token and teacher key, so it listens on 127.0.0.1 only. Set FTSPACE_MULTIUSER=1 to "
                         "serve many visitors (each with their own token), or FTSPACE_ALLOW_PUBLIC=1 if you mean it.")


def queue_settings() -> dict:
    """`demo.queue()`'s arguments: 4 events of a kind at once unless the event says otherwise, and an explicit
    queue size on a shared app (FTSPACE_MAX_WAITING), as Gradio would otherwise let one request wait on ZeroGPU."""
    from ftspace import limits

    size = limits.limit("waiting")
    if size is None and env.on_zerogpu():
        size = limits.LIMITS["waiting"].default
    return {"default_concurrency_limit": 4, "max_size": int(size) if size else None}


def mcp_enabled() -> bool:
    """Serve the agents' tools over MCP (at /gradio_api/mcp/): FTSPACE_MCP=1 (Gradio's own GRADIO_MCP_SERVER too)."""
    import os

    return os.environ.get("FTSPACE_MCP") == "1" or os.environ.get("GRADIO_MCP_SERVER", "").lower() == "true"
