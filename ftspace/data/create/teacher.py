"""The teacher: the model that writes new rows. One interface, three kinds.

- `default`: the bundled SmolLM2-135M-Instruct, loaded like Chat loads a base model (offline; on ZeroGPU
  it runs in a helper process, see ftspace.offload). Good for seeing the pipeline work, not for quality.
- `openai`: any OpenAI-compatible `/chat/completions` server (llama.cpp, vLLM, Ollama, OpenAI, ...),
  spoken to with httpx so that nothing but the key given for it is ever sent.
- `hf`: Hugging Face Inference Providers through huggingface_hub's `InferenceClient`, with the caller's
  own token (on a shared app the visitor's, decided by ftspace.access; never the server's).

Every request has a timeout, is retried with backoff on 429 / 5xx / timeouts, and at most `concurrency`
are in flight. `Teacher.usage` counts requests, failures and tokens. The key lives only in this object:
it is never logged, written, or put in an error message.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ftspace import env
from ftspace.data.create.settings import CreateSettings
from ftspace.errors import ConfigError, ModelError

ROUTER = "https://router.huggingface.co"  # Inference Providers' OpenAI-compatible router
BACKOFF_S = 1.0  # first wait before a retry; doubled each time
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class TeacherError(ModelError):
    """One request failed for good (after its retries); the message is safe to show."""


@dataclass
class Usage:
    requests: int = 0  # answered
    failed: int = 0  # failed for good after retries
    retries: int = 0
    prompt_tokens: int = 0  # as the server reports them (estimated at 4 characters a token where it does not)
    completion_tokens: int = 0
    seconds: float = 0.0  # summed over requests (wall time is shorter with concurrency)

    def line(self) -> str:
        return (f"{self.requests} teacher requests ({self.failed} failed, {self.retries} retried), "
                f"{self.prompt_tokens} prompt + {self.completion_tokens} completion tokens")


def router_url() -> str:
    """Inference Providers' base URL; HF_INFERENCE_ROUTER points it elsewhere (tests: the fake Hub)."""
    return os.environ.get("HF_INFERENCE_ROUTER", ROUTER).rstrip("/")


def chat_url(base: str) -> str:
    """The /chat/completions URL of an OpenAI-compatible server given by its base URL.

    >>> chat_url("http://127.0.0.1:8080/v1"), chat_url("http://h:1"), chat_url("http://h/v1/chat/completions")
    ('http://127.0.0.1:8080/v1/chat/completions', 'http://h:1/v1/chat/completions', 'http://h/v1/chat/completions')
    """
    base = base.strip().rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    return base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")


class Teacher:
    def __init__(self, settings: CreateSettings, key: str | None = None, token: str | None = None):
        """key: the API key of an 'openai' endpoint; token: the caller's Hub token (for 'hf'), from
        ftspace.access.hub_token. Neither is stored anywhere but here."""
        self.settings, self.kind = settings, settings.teacher
        self._key, self._token = (key or "").strip() or None, token
        self.usage = Usage()
        self._lock = threading.Lock()
        if self.kind == "openai":
            if not settings.teacher_url.strip().startswith(("http://", "https://")):
                raise ConfigError("teacher_url: give the OpenAI-compatible server's base URL, e.g. "
                                  "http://127.0.0.1:8080/v1.")
            if not settings.teacher_model.strip():
                raise ConfigError("teacher_model: name the model the server serves (e.g. the one llama.cpp, vLLM or "
                                  "Ollama loaded).")
            from ftspace.access import check_teacher_url

            check_teacher_url(settings.teacher_url)
        elif self.kind == "hf":
            if not settings.teacher_model.strip():
                raise ConfigError("teacher_model: name a Hub model served by Inference Providers, e.g. "
                                  "Qwen/Qwen2.5-72B-Instruct.")
            if not token:
                raise ConfigError("teacher 'hf' runs on your Hugging Face account: sign in (on the Space) or set "
                                  "HF_TOKEN / hf auth login, or pick another teacher.")
        self.concurrency = local_batch() if self.kind == "default" else settings.concurrency

    @property
    def name(self) -> str:
        return "default (SmolLM2-135M-Instruct)" if self.kind == "default" else f"{self.kind}:{self.settings.teacher_model}"

    # --- one request

    def complete(self, messages: list[dict], max_tokens: int | None = None) -> str:
        """The teacher's reply text to one chat. Raises TeacherError when it fails for good."""
        if self.kind == "default":
            return self.complete_many([messages], max_tokens)[0]
        s = self.settings
        body = dict(model=s.teacher_model.strip(), messages=messages, max_tokens=max_tokens or s.max_tokens,
                    temperature=s.temperature)
        for attempt in range(s.retries + 1):
            started = time.monotonic()
            try:
                text, usage = self._post(body)
            except _Retryable as e:
                if attempt == s.retries:
                    with self._lock:
                        self.usage.failed += 1
                    raise TeacherError(f"teacher {self.name}: {e.reason} (after {s.retries} retries).") from None
                with self._lock:
                    self.usage.retries += 1
                time.sleep(e.wait if e.wait is not None else BACKOFF_S * 2 ** attempt)
                continue
            except TeacherError:
                with self._lock:
                    self.usage.failed += 1
                raise
            with self._lock:
                u = self.usage
                u.requests += 1
                u.seconds += time.monotonic() - started
                u.prompt_tokens += usage.get("prompt_tokens") or sum(len(m["content"]) for m in messages) // 4
                u.completion_tokens += usage.get("completion_tokens") or len(text) // 4
            return text
        raise AssertionError("unreachable")

    def _post(self, body: dict) -> tuple[str, dict]:
        if self.kind == "openai":
            return self._post_openai(body)
        return self._post_hf(body)

    def _post_openai(self, body: dict) -> tuple[str, dict]:
        import httpx

        from ftspace.access import teacher_target

        url, pinned, extensions = teacher_target(chat_url(self.settings.teacher_url))  # checked for each request
        headers = {"Content-Type": "application/json", **pinned}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        try:
            with httpx.Client(timeout=self.settings.timeout) as client:
                r = client.post(url, json=body, headers=headers, extensions=extensions)
        except httpx.TimeoutException:
            raise _Retryable(f"no answer within {self.settings.timeout:g} s") from None
        except httpx.HTTPError as e:
            raise _Retryable(f"cannot reach {self.settings.teacher_url} ({type(e).__name__})") from None
        if r.status_code in RETRY_STATUS:
            raise _Retryable(f"the server answered {r.status_code}", _retry_after(r.headers))
        if r.status_code >= 400:
            raise TeacherError(f"teacher {self.name}: the server refused the request ({r.status_code}: "
                               f"{_short(r.text)}); check the URL, model and key.")
        try:
            data = r.json()
            return data["choices"][0]["message"]["content"] or "", data.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError):
            raise TeacherError(f"teacher {self.name}: the reply is not an OpenAI chat completion "
                               f"({_short(r.text)}).") from None

    def _post_hf(self, body: dict) -> tuple[str, dict]:
        from huggingface_hub import InferenceClient
        from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError, OfflineModeIsEnabled

        client = InferenceClient(base_url=router_url() + "/v1", api_key=self._token, timeout=self.settings.timeout)
        try:
            out = client.chat_completion(messages=body["messages"], model=body["model"],
                                         max_tokens=body["max_tokens"], temperature=body["temperature"])
        except InferenceTimeoutError:
            raise _Retryable(f"no answer within {self.settings.timeout:g} s") from None
        except HfHubHTTPError as e:
            status = e.response.status_code if e.response is not None else 0
            if status in RETRY_STATUS:
                raise _Retryable(f"Inference Providers answered {status}", _retry_after(e.response.headers)) from None
            hint = {401: "your token was refused: sign in again or use another token",
                    402: "your account is out of Inference Providers credits",
                    403: "your token may not call Inference Providers (it needs the inference permission)",
                    404: "no provider serves this model: pick another teacher_model"}.get(status, "")
            raise TeacherError(f"teacher {self.name}: Inference Providers refused the request ({status}"
                               f"{': ' + hint if hint else ''}).") from None
        except OfflineModeIsEnabled:
            raise TeacherError(f"teacher {self.name}: HF_HUB_OFFLINE is set, and Inference Providers is online: "
                               "unset it, or pick the default teacher.") from None
        except OSError as e:
            raise _Retryable(f"cannot reach Inference Providers ({type(e).__name__})") from None
        usage = out.usage
        return (out.choices[0].message.content or "",
                dict(prompt_tokens=getattr(usage, "prompt_tokens", 0), completion_tokens=getattr(usage, "completion_tokens", 0)))

    # --- many requests

    def complete_many(self, chats: list[list[dict]], max_tokens: int | None = None, stop=None, on_done=None) -> list:
        """Replies to many chats, in order, `concurrency` at a time: each a str, or the TeacherError it
        failed with. `stop` (a threading.Event) leaves the rest unsent (None in their place)."""
        if self.kind == "default":
            return self._local_many(chats, max_tokens, stop, on_done)

        def one(chat):
            if stop is not None and stop.is_set():
                return None
            try:
                reply = self.complete(chat, max_tokens)
            except TeacherError as e:
                reply = e
            if on_done:
                on_done()
            return reply

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(one, chats))

    def _local_many(self, chats, max_tokens, stop, on_done) -> list:
        from ftspace import offload

        s = self.settings
        batch = local_batch()
        out = []
        for start in range(0, len(chats), batch):
            part = chats[start:start + batch]
            if stop is not None and stop.is_set():
                out += [None] * len(part)
                continue
            started = time.monotonic()
            texts = offload.call("ftspace.data.create.teacher:local_replies", chats=part,
                                 max_tokens=max_tokens or s.max_tokens, temperature=s.temperature,
                                 seed=s.seed + self.usage.requests)
            u = self.usage
            u.requests += len(part)
            u.seconds += time.monotonic() - started
            u.prompt_tokens += sum(len(m["content"]) for chat in part for m in chat) // 4
            u.completion_tokens += sum(len(t) for t in texts) // 4
            out += texts
            if on_done:
                for _ in part:
                    on_done()
        return out


def local_batch() -> int:
    """Chats the bundled teacher answers per call, as one batched generation: 4 in-process (a third of the time of
    one at a time on a 2-core CPU: bench/RESULTS.md section 11; Stop and progress stay within a few replies), 8 on
    ZeroGPU, where each call is a fresh helper process that loads the model."""
    return 8 if env.on_zerogpu() else 4


def local_replies(chats: list, max_tokens: int, temperature: float, seed: int = 0) -> list[str]:
    """The bundled model's replies (in-process, or in the helper process on ZeroGPU)."""
    from ftspace.chat import load_cached, resolve_source
    from ftspace.config import GenerationSettings

    import torch

    torch.manual_seed(seed)
    model = load_cached(resolve_source(("base", "default"), token=None))
    settings = GenerationSettings(max_new_tokens=min(max_tokens, 4096), temperature=temperature, top_p=0.95)
    return model.replies(chats, settings)


class _Retryable(Exception):
    def __init__(self, reason: str, wait: float | None = None):
        self.reason, self.wait = reason, wait


def _retry_after(headers) -> float | None:
    try:
        return min(float(headers.get("retry-after")), 60.0)
    except (TypeError, ValueError):
        return None


def _short(text: str, n: int = 160) -> str:
    """A short excerpt of a server's reply, safe to show: one line, control characters escaped."""
    from ftspace.errors import escape

    return escape(" ".join((text or "").split()), n)
