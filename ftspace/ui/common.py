"""What every tab shares: errors to gr.Error, controls generated from RunConfig, sessions and owners.

Nothing here imports torch, transformers, peft, trl or unsloth: the page must be served in seconds.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
from dataclasses import fields
from pathlib import Path

import gradio as gr

from ftspace import access, owners, targets
from ftspace.owners import own_run, owner_uploads, visible_runs  # noqa: F401
from ftspace.env import multi_user, on_space  # noqa: F401
from ftspace.config import RunConfig
from ftspace.schema import default_of, field_type
from ftspace.errors import ConfigError, FtspaceError
from ftspace.models import CATALOGUE, DEFAULT

UPLOAD_LIMIT_MB = int(os.environ.get("FTSPACE_UPLOAD_LIMIT_MB", 100))


def model_events_at_once() -> int | None:
    """How many chat (or evaluation) events run at once: 2 where this process loads the models itself; on ZeroGPU
    no limit, as each one waits for its GPU in ZeroGPU's own queue, inside its call: a Gradio limit would make a
    visitor waiting there hold a slot every other visitor's chat then waits behind. Each visitor still holds at most
    FTSPACE_MAX_MODEL_SLOTS (targets.model_slot)."""
    from ftspace.env import on_zerogpu

    return None if on_zerogpu() else 2


AGAINST_BASE = "its base model"  # what Evaluate and Chat put beside a run unless another run of yours is picked


# --- errors: FtspaceError -> gr.Error at this one boundary (on a shared app without server folders in
# them); anything else is a bug


def user_errors(fn):
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except FtspaceError as e:
                raise gr.Error(owners.scrub_paths(str(e))) from None
        return gen

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FtspaceError as e:
            raise gr.Error(owners.scrub_paths(str(e))) from None
    return wrapper


# --- owners: who may see and control a run


def owner_of(request: gr.Request | None, browser_id: str = "") -> str:
    """A signed-in user's name (from the signed session cookie, not anything the client sends), else this
    browser's id (a random secret kept in localStorage), else the session."""
    username = login_name(request)
    if username:
        return "user:" + username
    key = browser_id or (request.session_hash if request is not None else "") or "anonymous"
    return "browser:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def login_name(request: gr.Request | None) -> str | None:
    """The Hugging Face username this request is signed in as (Gradio's OAuth session), if any.

    Read from what gr.OAuthProfile is built from (the "oauth_info" Gradio's login keeps in the signed session
    cookie, until it expires), so every handler knows its user without each one declaring a profile parameter.
    Only public interfaces: the request's Starlette scope (no session there without OAuth: nobody signed in)."""
    import time

    underlying = getattr(request, "request", None) or request
    scope = getattr(underlying, "scope", None)
    session = scope.get("session") if isinstance(scope, dict) else getattr(underlying, "session", None)
    info = session.get("oauth_info") if isinstance(session, dict) else None
    if not isinstance(info, dict) or (info.get("expires_at") is not None and info["expires_at"] < time.time()):
        return None
    return (info.get("userinfo") or {}).get("preferred_username")


SCRATCH_KEEP = 64  # files kept per kind in the scratch folder (Gradio copies what it serves into its own cache)


def scratch_file(kind: str, name: str, data: bytes) -> str:
    """A file to hand to a download button: one folder per content (the same YAML or zip twice is one file),
    the oldest removed beyond SCRATCH_KEEP, so a control changed a thousand times leaves no thousand folders."""
    import shutil
    import tempfile

    root = Path(tempfile.gettempdir()) / f"ftspace-{kind}"
    folder = root / hashlib.sha256(data).hexdigest()[:20]
    path = folder / name
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, path)
    os.utime(folder)  # most recently used
    for old in sorted(root.iterdir(), key=lambda p: p.stat().st_mtime)[:-SCRATCH_KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return str(path)


def visitor_token(oauth_token: gr.OAuthToken | None, typed: str | None = None) -> str | None:
    """The token this request's Hub calls carry (the rule is ftspace.access.hub_token's): on a shared app
    the visitor's OAuth token or one they typed, never the server's."""
    return access.hub_token(oauth_token.token if oauth_token is not None else None, typed)


def caller_of(request: gr.Request | None, browser_id: str = "", oauth_token: gr.OAuthToken | None = None):
    """The caller of a tab's event, for ftspace.targets' gate: who they are and the token that acts for them
    (a browser's OAuth token carries the scopes the Space asked for, write included)."""
    from ftspace.targets import Caller

    owner = owner_of(request, browser_id)
    return Caller(owner, visitor_token(oauth_token), page=owner_of(request, "") if browser_id else "")


def visitor_tier(profile: gr.OAuthProfile | None) -> str:
    """'anonymous', 'free' or 'pro' (Hugging Face's userinfo says isPro), which sizes ZeroGPU calls."""
    return access.tier(profile is not None, bool(profile is not None and profile.get("isPro")))


# --- controls generated from RunConfig

MODEL_CHOICES = [(f"{e.model_id}  ({e.params_b:g}B, ~{e.memory_gb(True):g} GB 4-bit / ~{e.memory_gb(False):g} GB 16-bit)"
                  if e.model_id != DEFAULT else f"default: SmolLM2-135M-Instruct, bundled, offline "
                  f"(~{e.memory_gb(False):g} GB)", e.model_id) for e in CATALOGUE]


def control_for(f, schema=RunConfig, **extra) -> gr.components.Component:
    """One Gradio control for one field of RunConfig (or `schema`): its type, default, help text and choices
    (`extra`: more arguments for the component, e.g. visible)."""
    meta = f.metadata
    default = default_of(f)
    kind = field_type(f, schema)
    label, info = field_label(f), meta["help"]
    if f.name == "model_name":
        return gr.Dropdown(MODEL_CHOICES, value=default, label=label, info=info, allow_custom_value=True, **extra)
    if f.name == "jobs_flavor":  # the Hub's flavors; one it adds later can be typed
        return gr.Dropdown(targets.jobs_flavors(), value=default, label=label, info=info, allow_custom_value=True, **extra)
    if kind is bool:
        return gr.Checkbox(value=default, label=label, info=info, **extra)
    if meta.get("choices"):
        return gr.Dropdown(meta["choices"], value=default, label=label, info=info, **extra)
    if kind in (int, float):
        # Bounds are checked by RunConfig, whose message names the field and the allowed range.
        return gr.Number(value=default, label=label, info=info, precision=0 if kind is int else None, **extra)
    if kind is list:
        return gr.Textbox(value=",".join(default), label=label, info=info, **extra)
    return gr.Textbox(value=default, label=label, info=info, **extra)


def field_label(f) -> str:
    """What the app calls a field: its human label with the key people meet in YAML, flags and the API."""
    return f"{f.metadata['label']} · {f.name}" if f.metadata.get("label") else f.name


def config_fields():
    return list(fields(RunConfig))


def config_from_values(values) -> RunConfig:
    """Rebuild a RunConfig from the controls' values (in field order); ConfigError names the field."""
    raw = {}
    for f, value in zip(config_fields(), values):
        if value is None and field_type(f, RunConfig) in (int, float):
            raise ConfigError(f"{f.name} is empty: enter a number.")
        raw[f.name] = value
    return RunConfig.from_dict(raw)


# --- the log panel

LOG_TAIL_BYTES = 4000


def log_tail(path, size=LOG_TAIL_BYTES) -> str:
    """The end of a run's log as the app shows it: ftspace's own lines and errors (what libraries print stays in
    the file). The Train tab's panel and the agents' run_progress read it."""
    from ftspace.quiet import is_own

    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - size))
            text = fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(line for line in text.splitlines() if is_own(line))


# --- next steps: a button that opens another tab on a run


def open_in(tab_id: str):
    """A handler: select tab `tab_id` with this run chosen in its run dropdown (one of the caller's runs)."""
    def go(run_id, browser_id, request: gr.Request):
        ids = [r.id for r in visible_runs(owner_of(request, browser_id))]
        return gr.Tabs(selected=tab_id), gr.Dropdown(choices=ids, value=run_id if run_id in ids else None)
    return go
