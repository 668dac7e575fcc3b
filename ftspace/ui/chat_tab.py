"""Chat tab: a run, a base model or a Hub adapter; streaming; base and tuned side by side; tool calls."""

from __future__ import annotations

import json
from dataclasses import fields

import gradio as gr

from ftspace.config import GenerationSettings
from ftspace.schema import default_of, field_type
from ftspace.errors import FtspaceError, ModelError
from ftspace import targets
from ftspace.ui.common import AGAINST_BASE, MODEL_CHOICES, caller_of, field_label, model_events_at_once, open_in, \
    own_run, user_errors, visitor_tier, visitor_token

SOURCES = ["a run of mine", "a base model", "an adapter on the Hub"]
BASE_LABEL = "Base (adapter off)"
GGUF_SOURCE = "a run's GGUF export (llama.cpp)"  # offered where llama-cpp-python is installed (not on ZeroGPU)


def sources() -> list[str]:
    import importlib.util

    from ftspace.env import on_zerogpu

    return SOURCES + ([GGUF_SOURCE] if importlib.util.find_spec("llama_cpp") and not on_zerogpu() else [])


def build(ui: dict):
    with gr.Row():
        ui["chat_source"] = gr.Radio(sources(), value=SOURCES[0], label="Chat with")
        ui["chat_run"] = gr.Dropdown([], label="Run", interactive=True, allow_custom_value=True)
        ui["chat_base"] = gr.Dropdown(MODEL_CHOICES, value="default", label="Base model", allow_custom_value=True,
                                      visible=False)  # each field shown for the source it belongs to (shown_for)
        ui["chat_hub"] = gr.Textbox(label="Hub adapter repo", placeholder="owner/my-adapter", visible=False)
    ui["chat_state"] = gr.Markdown()
    ui["chat_system"] = gr.Textbox(label="System prompt", placeholder="optional")
    with gr.Row():
        for f in fields(GenerationSettings):  # bounds, defaults and help from the one definition
            ui[f"chat_{f.name}"] = gr.Slider(f.metadata["low"], f.metadata["high"], value=default_of(f),
                                             step=1 if field_type(f, GenerationSettings) is int else 0.05,
                                             label=field_label(f), info=f.metadata["help"])
        ui["chat_compare"] = gr.Checkbox(value=True, label="Side by side")
        ui["chat_against"] = gr.Dropdown([AGAINST_BASE], value=AGAINST_BASE, label="Side by side with",
                                         allow_custom_value=True, info="the base (adapter off), or another run of "
                                         "yours")
    with gr.Row():
        ui["chat_tuned"] = gr.Chatbot(label="Tuned (adapter on)", height=360)
        ui["chat_base_bot"] = gr.Chatbot(label=BASE_LABEL, height=360)
    with gr.Row():
        ui["chat_input"] = gr.Textbox(label="Message", placeholder="Ask something your data taught it", scale=5)
        ui["chat_send"] = gr.Button("Send", variant="primary", scale=1)
        ui["chat_clear"] = gr.Button("Clear", scale=1)
    ui["to_publish"] = gr.Button("Publish this run →")


def wire(ui: dict):
    inputs = [ui["browser_id"], ui["chat_source"], ui["chat_run"], ui["chat_base"], ui["chat_hub"], ui["chat_system"],
              ui["chat_max_new_tokens"], ui["chat_temperature"], ui["chat_top_p"], ui["chat_compare"], ui["chat_input"],
              ui["chat_tuned"], ui["chat_base_bot"], ui["chat_against"]]
    outputs = [ui["chat_tuned"], ui["chat_base_bot"], ui["chat_input"]]
    # Chat has its own queue: it never waits behind training, which runs in a worker process.
    gr.on([ui["chat_send"].click, ui["chat_input"].submit], respond, inputs, outputs, concurrency_id="chat",
          concurrency_limit=model_events_at_once(), api_name="chat")
    ui["chat_clear"].click(lambda: ([], [], ""), None, outputs, queue=False, api_visibility="private")
    ui["to_publish"].click(open_in("publish"), [ui["chat_run"], ui["browser_id"]], [ui["tabs"], ui["pub_run"]],
                           api_visibility="private")
    ui["chat_run"].change(preload, [ui["browser_id"], ui["chat_run"]], ui["chat_state"], queue=False,
                          api_name="chat_pick")
    ui["chat_against"].change(second_label, [ui["chat_against"]], [ui["chat_base_bot"]], queue=False,
                              show_progress="hidden", api_visibility="private")
    ui["chat_source"].change(shown_for, [ui["chat_source"]], [ui["chat_run"], ui["chat_base"], ui["chat_hub"]],
                             queue=False, show_progress="hidden", api_visibility="private")


def shown_for(source: str):
    """The fields the picked source uses, and only those: a run (of mine, or its GGUF export), a base model, or a
    Hub adapter repo (its base is read from the adapter)."""
    return (gr.update(visible=source in (SOURCES[0], GGUF_SOURCE)), gr.update(visible=source == SOURCES[1]),
            gr.update(visible=source == SOURCES[2]))


def second_label(against: str):
    """The right-hand chat names what answers there: the base, or the other run."""
    return gr.update(label=BASE_LABEL if not against or against == AGAINST_BASE else f"Run {against}")


def load_finished_run(run) -> None:
    """A run that has just completed starts loading for chat in the background (the app's queue calls this from its
    loop), so the first message finds it ready. No visitor's token here: a run on a private Hub base model loads
    when its owner first chats."""
    from ftspace import chat

    if (run.adapter_dir / "adapter_config.json").exists():
        chat.preload(("run", str(run.adapter_dir)))

def preload(browser_id, run_id, request: gr.Request, oauth_token: gr.OAuthToken | None = None) -> str:
    """A run picked here starts loading in the background, so the first reply does not wait for it."""
    from ftspace import chat

    try:
        source = source_for(SOURCES[0], run_id, "", "", caller_of(request, browser_id))
    except FtspaceError:
        return ""  # none picked, not this visitor's, or not finished: Send says why
    future = chat.preload(source, visitor_token(oauth_token))
    if future is None:  # ZeroGPU: each message loads the model inside its GPU call
        return ""
    if future.done() and future.exception() is None:
        return f"Run {run_id} is loaded: replies start at once."
    return f"Loading run {run_id} in the background; type your message meanwhile."


def source_for(kind, run_id, base_model, hub_repo, caller) -> tuple:
    """What the visitor picked to chat with, through the gate: a run of theirs (or its GGUF export), a Hub adapter,
    or a base model."""
    if kind == GGUF_SOURCE:
        from ftspace.export import find_gguf

        if not run_id:
            raise FtspaceError("Pick a run whose GGUF export to chat with.")
        return ("gguf", str(find_gguf(own_run(run_id, caller.owner))))
    if kind == SOURCES[0]:
        if not run_id:
            raise FtspaceError("Pick a run (or chat with a base model).")
        run = own_run(run_id, caller.owner)
        if not (run.adapter_dir / "adapter_config.json").exists():
            raise ModelError(f"Run {run.id} has no adapter yet ({run.status()['status']}): wait for it to finish.")
        return ("run", str(run.adapter_dir))
    if kind == SOURCES[2]:
        if not (hub_repo or "").strip():
            raise FtspaceError("Enter the Hub repo id of an adapter, e.g. owner/my-adapter.")
        return ("hub", hub_repo.strip())
    return ("base", targets.admit_model(base_model or "default", caller))


def text_of(content) -> str:
    """Gradio 6 message content arrives as a list of blocks; keep the text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    if isinstance(content, dict):
        return str(content.get("text", ""))
    return str(content or "")


def render_reply(text: str) -> str:
    """Tool calls in a reply shown as a readable call, the raw tags hidden."""
    import re

    from ftspace.chat import parse_tool_calls

    calls = parse_tool_calls(text)
    if not calls:
        return text
    rest = re.sub(r"<tool_call>.*?</tool_call>", "", text, flags=re.S).strip()
    shown = "\n".join(f"🔧 **{c['name']}**(`{json.dumps(c.get('arguments', {}), ensure_ascii=False)}`)" for c in calls)
    return (rest + "\n\n" if rest else "") + shown


@user_errors
def respond(browser_id, kind, run_id, base_model, hub_repo, system, max_new, temperature, top_p, compare, message,
            tuned_history, base_history, against: str = AGAINST_BASE, request: gr.Request = None,
            oauth_token: gr.OAuthToken | None = None, profile: gr.OAuthProfile | None = None):
    """One message to the picked model (a run of yours, a base model, a Hub adapter, a run's GGUF export), its reply
    streamed; side by side (`compare`) the base's reply with the adapter off, or `against` another run of yours, its
    reply to the right-hand conversation."""
    from ftspace.chat import resolve_source

    message = (message or "").strip()
    if not message:
        raise FtspaceError("Type a message first.")
    caller = caller_of(request, browser_id, oauth_token)
    for history in (tuned_history, base_history):  # within this app's limits before anything is read or loaded
        targets.admit_chat(list(history or []) + [{"role": "user", "content": message},
                                                  {"role": "system", "content": system or ""}], caller)
    # Downloads (a Hub adapter, a Hub base model) happen here, on CPU, with this visitor's token only.
    source = resolve_source(source_for(kind, run_id, base_model, hub_repo, caller), caller.token)
    other = None
    if compare and against and against != AGAINST_BASE:  # another run of this visitor's, through the same gate
        other = resolve_source(source_for(SOURCES[0], against, "", "", caller), caller.token)
        if other == source:
            raise FtspaceError(f"Run {against} is on both sides: pick another run to compare with, or its base.")
    settings = GenerationSettings(max_new_tokens=max_new, temperature=temperature, top_p=top_p)
    history = [{"role": m["role"], "content": text_of(m["content"])} for m in (tuned_history or [])]
    prompt = ([{"role": "system", "content": system}] if system else []) + history + [
        {"role": "user", "content": message}]
    base_prompt = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user" if m["role"] == "user" else "assistant", "content": text_of(m["content"])}
        for m in (base_history or [])] + [{"role": "user", "content": message}]
    tuned = list(tuned_history or []) + [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
    side = compare and (other is not None or source[0] not in ("base", "gguf"))  # a GGUF export: the tuned model only
    base = list(base_history or []) + ([{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
                                       if side else [])

    with targets.model_slot(caller):
        yield from _replies(source, prompt, base_prompt, settings, tuned, base, side, profile, other)


def _replies(source, prompt, base_prompt, settings, tuned, base, side, profile, other=None):
    """Both replies as they grow (on ZeroGPU: one GPU call per message, streaming them out of the fork)."""
    for tuned_text, base_text in targets.chat_replies(source, prompt, base_prompt if side else None, settings,
                                                      visitor_tier(profile), other):
        tuned[-1]["content"] = render_reply(tuned_text)
        if side:
            base[-1]["content"] = render_reply(base_text)
        yield tuned, base, ""
