"""Who may do what: which token a request's Hub calls carry, which runs and files a caller may reach.

The app and the CLI both decide here, so no tab carries its own rule. A *shared* app is a Hugging
Face Space (or any app started with FTSPACE_MULTIUSER=1): many visitors, most signed out. There a
visitor's Hub calls carry that visitor's own credentials (their OAuth token, or a token typed into
that request) or none at all: the server's HF_TOKEN secret and saved login are never used for a
visitor. Self-hosted single-user keeps the usual order: a typed token, else HF_TOKEN, else the saved
`hf auth login` token.

Nothing here imports Gradio, torch or transformers.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from ftspace import runs
from ftspace.errors import ConfigError, DataError, ModelError


# A Hub repo id as the Hub allows it: [owner/]name, letters, digits, '-', '_' and '.', no leading '.' or '-'
# (callers also refuse '..'). Datasets, models and push targets alike.
HUB_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


def on_space() -> bool:
    """Running as a Hugging Face Space (the same test Gradio uses before it enables OAuth)."""
    return os.environ.get("SYSTEM") == "spaces" and bool(os.environ.get("SPACE_ID"))


def multi_user() -> bool:
    """On a Space (or when asked), each visitor sees only their own runs and acts with their own token."""
    return on_space() or os.environ.get("FTSPACE_MULTIUSER") == "1"


# --- which token acts


def hub_token(oauth_token: str | None = None, typed: str | None = None) -> str | None:
    """The token for one request's Hub calls; None means the calls go out without one."""
    typed = (typed or "").strip() or None
    if multi_user():
        return oauth_token or typed
    if typed or oauth_token:
        return typed or oauth_token
    from huggingface_hub import get_token

    return get_token()  # HF_TOKEN, else the saved `hf auth login` token


# --- API and MCP callers: no browser, no OAuth cookie; they say who they are with a Hub token


def bearer_token(headers) -> str | None:
    """The token of an `Authorization: Bearer hf_...` header, if the request carries one."""
    scheme, _, token = ((headers or {}).get("authorization") or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


_token_owners: dict[str, str] = {}  # sha256 of a token -> "user:NAME" (the token itself is never kept)


def token_owner(token: str) -> str:
    """"user:NAME" for the Hub account a token belongs to (the Hub's whoami, asked once per token): the same
    owner as that account signed in through the browser, so both see the same runs."""
    from huggingface_hub import whoami
    from huggingface_hub.errors import HfHubHTTPError

    key = hashlib.sha256(token.encode()).hexdigest()
    if key not in _token_owners:
        try:
            name = whoami(token=token)["name"]
        except HfHubHTTPError as e:
            status = getattr(e.response, "status_code", "?")
            raise ConfigError(f"The Hub refused the token in the Authorization header ({status}): send a valid "
                              "Hugging Face token (Settings > Access Tokens).") from None
        except OSError as e:
            raise ConfigError(f"The Hub could not be reached to check the token ({type(e).__name__}): try "
                              "again later.") from None
        _token_owners[key] = "user:" + name
    return _token_owners[key]


def api_caller(bearer: str | None) -> tuple[str | None, str | None]:
    """(owner, token) for a caller of the app's API/MCP tools. On a shared app: the Hub account of the token
    they send, which is also the only token that acts for them (never the server's); without one, no owner:
    they may inspect and estimate, and are asked for a token to run, follow, ask or push. Self-hosted: the
    machine's user, with the token sent, else the machine's own (hub_token's order)."""
    if multi_user():
        return (token_owner(bearer), bearer) if bearer else (None, None)
    return "local", hub_token(typed=bearer)


def teacher_key(typed: str | None = None) -> str | None:
    """The API key for an OpenAI-compatible teacher: the one typed for this request; self-hosted, else
    FTSPACE_TEACHER_KEY or OPENAI_API_KEY. A shared app never lends the server's key to a visitor."""
    typed = (typed or "").strip() or None
    if typed or multi_user():
        return typed
    return os.environ.get("FTSPACE_TEACHER_KEY") or os.environ.get("OPENAI_API_KEY") or None


def check_teacher_url(url: str) -> None:
    """On a shared app a visitor's teacher URL must be a public server: one that resolves to this machine or
    its private network (loopback, private, link-local such as a cloud's metadata service) is refused, so a
    visitor cannot make the server call its neighbours. Self-hosted, a local llama.cpp / vLLM is the point."""
    if not multi_user():
        return
    import ipaddress
    import socket
    from urllib.parse import urlparse

    host = urlparse(url.strip()).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)} if host else set()
    except OSError:
        raise ConfigError(f"teacher_url: cannot resolve {host!r}: check the address.") from None
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_reserved or ip.is_unspecified:
            raise ConfigError(f"teacher_url: {host} is on this server's own network; on a shared app the teacher "
                              "must be a public endpoint (or run ftspace yourself to use a local one).")
    if not addresses:
        raise ConfigError("teacher_url: give the server's address, e.g. https://api.example.com/v1.")


def as_hub_arg(token: str | None):
    """What to pass as `token=` to huggingface_hub / datasets / transformers: the token, or False, which
    tells them to send none (None would make them read HF_TOKEN and the saved login themselves)."""
    return token or False


def worker_env(env: dict) -> dict:
    """The environment of a training process started for a shared app: no server credentials, and no
    Hub access at all (the request that queued the run downloaded everything with its own token)."""
    if not multi_user():
        return env
    env = {k: v for k, v in env.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_HUB_DISABLE_IMPLICIT_TOKEN="1")
    return env


def tier(signed_in: bool, is_pro: bool = False) -> str:
    """The visitor's account tier, which sizes their ZeroGPU calls: 'anonymous', 'free' or 'pro'."""
    return "pro" if signed_in and is_pro else "free" if signed_in else "anonymous"


# --- whose runs and files


def uploads_dir() -> Path:
    return runs.runs_root().parent / "uploads"


def owner_uploads(owner: str) -> Path:
    """This owner's own upload folder (named by a hash: owner strings never become paths)."""
    return uploads_dir() / hashlib.sha256(owner.encode()).hexdigest()[:16]


def guard_paths(owner: str, dataset: str | None = None, model_name: str | None = None):
    """On a shared app a request reads only what is its own: a dataset is a bundled example, a Hub id or
    a file this owner uploaded, never another path on the server; a model path never points into the
    app's runs or uploads (another user's adapter). Self-hosted, the machine is yours: no limits."""
    if not multi_user():
        return
    if dataset and not dataset.strip().startswith("example:"):
        from ftspace.data import resolve

        path = Path(dataset.strip()).expanduser()
        looks_local = path.exists() or dataset.strip().startswith((".", "/", "~")) or ".." in dataset
        if looks_local and not path.resolve().is_relative_to(owner_uploads(owner).resolve()):
            raise DataError(f"{path.name or dataset}: files on the server cannot be read in a shared app: "
                            "upload the file, or use a Hub dataset or a bundled example.")
        resolve(dataset)  # a Hub id or an upload of one's own: the usual checks and messages
    if model_name:
        path = Path(model_name.strip()).expanduser()
        if path.exists() and any(path.resolve().is_relative_to(root.resolve())
                                 for root in (runs.runs_root(), uploads_dir())):
            raise ModelError(f"{model_name}: model folders inside the app's runs and uploads cannot be used "
                             "as a base model: pick your run under 'a run of mine' instead.")


UPLOADED = " (uploaded)"


def upload_name(name: str, default: str) -> str:
    """The name an upload is kept under: letters, digits, '_', '.', '-' only, no leading dot.

    >>> upload_name("..my data ü.jsonl", "data.jsonl"), upload_name("", "rows.jsonl")
    ('my_data__.jsonl', 'rows.jsonl')
    """
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name or "").lstrip(".") or default


def shown_dataset(dataset: str) -> str:
    """How the app shows a dataset: an upload by its file name ("qa.csv (uploaded)"), never by where the server
    keeps it (shared or self-hosted alike); any other path as it is (self-hosted, it is a path you typed)."""
    if not dataset or dataset.startswith("example:"):
        return dataset
    path = Path(dataset).expanduser()
    if path.is_absolute() and path.resolve().is_relative_to(uploads_dir().resolve()):
        return path.name + UPLOADED
    return dataset


def dataset_from_shown(owner: str, text: str) -> str:
    """The dataset a visitor's text means: "qa.csv (uploaded)" is this owner's newest upload of that name."""
    text = (text or "").strip()
    if not text.endswith(UPLOADED):
        return text
    import glob

    name = text[: -len(UPLOADED)]
    found = sorted(owner_uploads(owner).glob(f"*/{glob.escape(name)}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise DataError(f"{name}: no upload of yours has that name: upload the file again.")
    return str(found[-1])


def own_sources(owner: str, cfg):
    """`cfg` with its datasets as this owner means them ("qa.csv (uploaded)" is their upload), checked to be
    theirs to read (guard_paths) along with its model; for every way a run is configured (tab, API, MCP)."""
    cfg.dataset = dataset_from_shown(owner, cfg.dataset)
    cfg.test_dataset = dataset_from_shown(owner, cfg.test_dataset)
    guard_paths(owner, dataset=cfg.dataset, model_name=cfg.model_name)
    guard_paths(owner, dataset=cfg.test_dataset)
    return cfg


def scrub_paths(text: str) -> str:
    """Server folders taken out of text the app shows (log lines, errors, agents' answers): the runs and uploads
    folders become "runs" and "uploads" (what a run's files are called in its folder), the app's data folder, the
    model caches and the app's own folder short labels. The CLI shows paths as they are."""
    if not text:
        return text
    from huggingface_hub import constants

    from ftspace.models import cache_dir

    labels = [(runs.runs_root(), "runs"), (uploads_dir(), "uploads"), (runs.runs_root().parent, "<app>"),
              (Path(constants.HF_HUB_CACHE), "<hf-cache>"),
              (cache_dir(), "<cache>"), (Path(__file__).resolve().parent.parent, "<ftspace>")]
    for folder, label in sorted(labels, key=lambda item: -len(str(item[0]))):
        text = text.replace(str(folder), label)
    return text


def visible_runs(owner: str) -> list[runs.Run]:
    items = runs.list_runs()
    if not multi_user():
        return items
    return [r for r in items if r.read_status().get("owner") == owner]


def own_run(run_id: str, owner: str) -> runs.Run:
    """The run, if this owner may see it; the same error as a missing run otherwise."""
    run = runs.get(run_id)
    if multi_user() and run.read_status().get("owner") != owner:
        raise runs.RunError(f"No run '{run_id}': pick one of your runs.")
    return run


# --- reading from the Hub on a caller's behalf


def check_sources(cfg, token: str | None) -> None:
    """Before a run is queued: the caller may read its Hub model and Hub dataset (local ones pass)."""
    from ftspace.data.load import resolve

    for dataset in filter(None, (cfg.dataset, cfg.test_dataset.strip())):
        if resolve(dataset)[0] == "hub":
            try:
                check_hub_read(dataset, "dataset", token)
            except PermissionError as e:
                raise DataError(f"Hub dataset {e}") from None
    model = cfg.model_name
    if model != "default" and not Path(model).expanduser().exists():
        try:
            check_hub_read(model, "model", token)
        except PermissionError as e:
            raise ModelError(str(e)) from None


def check_hub_read(repo_id: str, repo_type: str, token: str | None) -> None:
    """Ask the Hub whether this caller may read the repo, before anything cached is used for them.

    huggingface_hub falls back to its local cache when the Hub refuses a request (a private repo and no
    token), so a repo one visitor downloaded would be handed to the next. This asks first, with the
    caller's token only, and raises PermissionError with the Hub's answer. Where the Hub cannot be
    reached, a single-user machine may use its cache; a shared app may not (it cannot tell whose it is).
    """
    import httpx
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError

    info = HfApi().dataset_info if repo_type == "dataset" else HfApi().model_info
    try:
        info(repo_id, token=as_hub_arg(token))
    except GatedRepoError:
        raise PermissionError(f"{repo_id} is gated: accept its terms on the Hub, then sign in (or use a token "
                              "that has access).") from None
    except RepositoryNotFoundError:
        hint = "sign in with Hugging Face if it is yours" if not token else "check the id and that your account has access"
        raise PermissionError(f"{repo_id}: not found on the Hub (or private): {hint}.") from None
    except (OfflineModeIsEnabled, httpx.TransportError, HfHubHTTPError) as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            raise PermissionError(f"{repo_id}: the Hub refused the token ({status}): sign in again, or use a "
                                  "token with read access.") from None
        if multi_user():
            raise PermissionError(f"{repo_id}: the Hub cannot be reached to check access "
                                  f"({type(e).__name__}): try again later.") from None
