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

import contextlib
import hashlib
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ftspace import runs
from ftspace.errors import ConfigError, DataError, ModelError, escape  # noqa: F401  (escape: for the UI and core)


# A Hub repo id as the Hub allows it: [owner/]name, letters, digits, '-', '_' and '.', no leading '.' or '-'
# (callers also refuse '..'). Datasets, models and push targets alike.
HUB_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


def hub_shaped(text: str) -> bool:
    """An owner/name Hub repo id by its text alone: no look at the disk (a relative path that exists is still a
    Hub id), so what a visitor types reveals nothing about the server's files."""
    return bool(HUB_ID.match(text or "")) and ".." not in text and "/" in text


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


IDENTITY_TTL_S = 300  # how long the Hub's word on a token is kept: a revoked token stops working within this


@dataclass(frozen=True)
class Identity:
    owner: str  # "user:NAME"
    can_write: bool  # may create repos and commit to the user's own (push, Jobs)


_identities: dict[str, tuple[float, Identity]] = {}  # sha256 of a token -> (when asked, identity); never the token
_identities_lock = threading.Lock()


def token_identity(token: str) -> Identity:
    """Who a token acts for, from the Hub's whoami (asked again after IDENTITY_TTL_S): only a user's own token
    (an access token or an OAuth token) is an identity; an organization's or an app's token is refused."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    key = hashlib.sha256(token.encode()).hexdigest()
    ttl = float(os.environ.get("FTSPACE_IDENTITY_TTL_S", IDENTITY_TTL_S))
    with _identities_lock:
        found = _identities.get(key)
    if found is not None and time.monotonic() - found[0] < ttl:
        return found[1]
    try:
        info = HfApi().whoami(token=token)
    except HfHubHTTPError as e:
        with _identities_lock:
            _identities.pop(key, None)
        status = getattr(e.response, "status_code", "?")
        raise ConfigError(f"The Hub refused the token in the Authorization header ({status}): send a valid "
                          "Hugging Face token (Settings > Access Tokens).") from None
    except OSError as e:
        raise ConfigError(f"The Hub could not be reached to check the token ({type(e).__name__}): try "
                          "again later.") from None
    identity = _identity_of(info)
    with _identities_lock:
        _identities[key] = (time.monotonic(), identity)
    return identity


def _identity_of(info: dict) -> Identity:
    auth = info.get("auth") or {}
    kind, access_token = auth.get("type"), auth.get("accessToken") or {}
    role = access_token.get("role")
    if info.get("type") != "user" or kind not in ("access_token", "oauth"):
        raise ConfigError("The token in the Authorization header is not a user's access token (it is "
                          f"{escape(str(info.get('type') or kind or 'unknown'), 20)}'s): send your own token "
                          "(Settings > Access Tokens).")
    if kind == "access_token" and role not in ("read", "write", "fineGrained", "admin", "contributor"):
        raise ConfigError(f"The token in the Authorization header has the role {escape(str(role), 20)}: send a "
                          "read or write token of your own.")
    name = info["name"]
    if kind == "oauth":
        scopes = set(str(auth.get("scope") or access_token.get("scope") or "").split())
        can_write = bool(scopes & {"write-repos", "manage-repos"}) or not scopes
    elif role == "fineGrained":
        grained = access_token.get("fineGrained") or {}
        own = [s for s in grained.get("scoped") or [] if (s.get("entity") or {}).get("name") == name]
        can_write = "repo.write" in (grained.get("global") or []) or any(
            "repo.write" in (s.get("permissions") or []) for s in own)
    else:
        can_write = role in ("write", "admin", "contributor")
    return Identity("user:" + name, can_write)


def token_owner(token: str) -> str:
    """"user:NAME" for the Hub account a token belongs to: the same owner as that account signed in through the
    browser, so both see the same runs."""
    return token_identity(token).owner


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


def check_teacher_url(url: str) -> str | None:
    """On a shared app a visitor's teacher URL must be a public server: one that resolves to anything but a
    globally routable address (loopback, private, link-local such as a cloud's metadata service, carrier-grade
    NAT 100.64.0.0/10, reserved) is refused, so a visitor cannot make the server call its neighbours. Returns
    the checked address to connect to (None self-hosted, where a local llama.cpp / vLLM is the point). Called
    for every connection (`teacher_target`), so a name that resolves elsewhere the second time (DNS
    rebinding) never reaches an unchecked address."""
    if not multi_user():
        return None
    import ipaddress
    import socket
    from urllib.parse import urlparse

    host = urlparse(url.strip()).hostname or ""
    if not host:
        raise ConfigError("teacher_url: give the server's address, e.g. https://api.example.com/v1.")
    try:
        addresses = [info[4][0] for info in socket.getaddrinfo(host, None)]
    except OSError:
        raise ConfigError(f"teacher_url: cannot resolve {escape(host, 80)!r}: check the address.") from None
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global or ip.is_multicast:
            raise ConfigError(f"teacher_url: {escape(host, 80)} is on this server's own network (or not a public "
                              "address); on a shared app the teacher must be a public endpoint (or run ftspace "
                              "yourself to use a local one).")
    if not addresses:
        raise ConfigError("teacher_url: give the server's address, e.g. https://api.example.com/v1.")
    return addresses[0]


def teacher_target(url: str) -> tuple[str, dict, dict]:
    """(url, extra headers, httpx extensions) for one request to a teacher: on a shared app the URL's host is
    checked now and the connection made to the checked address (the name kept for Host, TLS SNI and the
    certificate check), so nothing but a checked address is ever reached."""
    address = check_teacher_url(url)
    if address is None:
        return url, {}, {}
    from urllib.parse import urlparse, urlunparse

    parts = urlparse(url)
    host = parts.hostname or ""
    shown_address = f"[{address}]" if ":" in address else address
    netloc = shown_address + (f":{parts.port}" if parts.port else "")
    pinned = urlunparse(parts._replace(netloc=netloc))
    headers = {"Host": host + (f":{parts.port}" if parts.port else "")}
    return pinned, headers, ({"sni_hostname": host} if parts.scheme == "https" else {})


def as_hub_arg(token: str | None):
    """What to pass as `token=` to huggingface_hub / datasets / transformers: the token, or False, which
    tells them to send none (None would make them read HF_TOKEN and the saved login themselves)."""
    return token or False


def child_env(env: dict) -> dict:
    """The environment of any process a shared app starts: no server credentials, and implicit Hub tokens off
    (a call that names no token sends none)."""
    if not multi_user():
        return env
    env = {k: v for k, v in env.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH")}
    env["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
    return env


def worker_env(env: dict) -> dict:
    """The environment of a training process started for a shared app: child_env's, and no Hub access at all
    (the request that queued the run downloaded everything with its own token)."""
    if not multi_user():
        return env
    env = child_env(env)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
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


UPLOADED = " (uploaded)"


def keep_upload(owner: str, name: str, folder: str, data: bytes | None = None, src: Path | None = None) -> Path:
    """Keep a file a caller uploaded (bytes, or a file Gradio received) in their own folder; on a shared app
    within their count and bytes (FTSPACE_MAX_UPLOADS, FTSPACE_MAX_UPLOADS_MB): their oldest uploads are
    removed to make room, and one file larger than all the room is refused."""
    import shutil

    from ftspace import limits

    size = len(data) if data is not None else src.stat().st_size
    limits.check("uploads_mb", round(size / 2**20, 3), f"{escape(name, 80)}: this file")
    dest = owner_uploads(owner) / re.sub(r"[^A-Za-z0-9_.-]", "_", folder)[-40:].lstrip(".") / upload_name(name, "data.jsonl")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if data is not None:
        dest.write_bytes(data)
    else:
        shutil.copyfile(src, dest)
    prune_uploads(owner, dest)
    return dest


def prune_uploads(owner: str, newest: Path) -> None:
    """On a shared app: this owner's oldest uploads removed until their count and bytes are within the limits
    (never `newest`, the file just kept)."""
    from ftspace import limits

    kept = sorted((p for p in owner_uploads(owner).glob("*/*") if p.is_file()), key=lambda p: p.stat().st_mtime)
    kept = [p for p in kept if p != newest] + [newest]
    total = sum(p.stat().st_size for p in kept)
    while kept[0] != newest and (limits.over("uploads", len(kept)) or limits.over("uploads_mb", total / 2**20)):
        oldest = kept.pop(0)
        total -= oldest.stat().st_size
        oldest.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            oldest.parent.rmdir()  # its folder, once empty


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


def owner_models() -> list[str]:
    """Model folders the app's owner offers every visitor as base models (FTSPACE_OWNER_MODELS, separated by
    the path separator), named exactly; no other folder on the server is a base model on a shared app, and only
    these travel with a visitor's Jobs run."""
    return [p for p in os.environ.get("FTSPACE_OWNER_MODELS", "").split(os.pathsep) if p.strip()]


def dataset_from_shown(owner: str, text: str) -> str:
    """The dataset a visitor's text means: "qa.csv (uploaded)" is this owner's newest upload of that name."""
    text = (text or "").strip()
    if not text.endswith(UPLOADED):
        return text
    import glob

    name = text[: -len(UPLOADED)]
    if upload_name(name, "") != name:  # no '..', '/', or anything an upload is never named
        raise DataError(f"{escape(name, 80)}: no upload of yours has that name: upload the file again.")
    found = sorted(owner_uploads(owner).glob(f"*/{glob.escape(name)}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise DataError(f"{escape(name, 80)}: no upload of yours has that name: upload the file again.")
    return str(found[-1])


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
    """Before a run is queued on a self-hosted app: the caller may read its Hub model and Hub dataset (local
    ones pass). A shared app asks the same of the Hub in ftspace.targets.admit, sizes included."""
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


MODEL_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".msgpack", ".h5")


def hub_size(repo_id: str, repo_type: str, token: str | None) -> int:
    """check_hub_read, and the bytes a download would take from the Hub's metadata (a model: its weights; a
    dataset: its files), before anything is downloaded."""
    info = check_hub_read(repo_id, repo_type, token, files_metadata=True)
    files = [s for s in (getattr(info, "siblings", None) or [])]
    if repo_type == "model":
        files = [s for s in files if s.rfilename.endswith(MODEL_WEIGHTS)]
    return sum(int(getattr(s, "size", None) or 0) for s in files)


def check_hub_read(repo_id: str, repo_type: str, token: str | None, files_metadata: bool = False):
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
        return info(repo_id, token=as_hub_arg(token), files_metadata=files_metadata)
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
