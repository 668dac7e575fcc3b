"""Who the caller is and which token acts: the Hub calls of a request, the repo-id rules, "may this caller read
this Hub repo". Whose runs and files a caller may reach is ftspace.owners's.

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
import threading
import time
from dataclasses import dataclass

from ftspace.errors import ConfigError, HubError, escape
from ftspace.env import multi_user


# A Hub repo id as the Hub allows it: [owner/]name, letters, digits, '-', '_' and '.', no leading '.' or '-'
# (callers also refuse '..'). Datasets, models and push targets alike.
HUB_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


def hub_shaped(text: str) -> bool:
    """An owner/name Hub repo id by its text alone: no look at the disk (a relative path that exists is still a
    Hub id), so what a visitor types reveals nothing about the server's files."""
    return bool(HUB_ID.match(text or "")) and ".." not in text and "/" in text


def validate_repo_name(name: str) -> str:
    """A repo id to push to or read an adapter from, as the Hub allows it; else one line saying what is allowed."""
    name = (name or "").strip()
    if not name:
        raise HubError("Repository name is empty: use e.g. my-zorblax-adapter or your-name/my-adapter.")
    if ".." in name or name.endswith((".git", ".")) or not HUB_ID.match(name) or "--" in name:
        raise HubError(f"Repository name {name!r} is not valid: use letters, digits, '-', '_' and '.', "
                       "at most 96 characters, optionally as owner/name.")
    return name


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


# --- reading from the Hub on a caller's behalf


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
