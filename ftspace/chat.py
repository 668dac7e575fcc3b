"""Load a base model with a run's adapter and generate replies, streamed or whole.

Inference uses stock transformers + PEFT (no Unsloth): a saved adapter must load the way anyone
who downloads it would load it. `base=True` answers with the adapter disabled, so the same loaded
model gives both sides of a base-vs-tuned comparison.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ftspace import env
from ftspace.config import GenerationSettings  # noqa: F401  (the one set of generation defaults)
from ftspace.errors import ModelError


class ChatModel:
    def __init__(self, model, tokenizer, has_adapter: bool, name: str):
        self.model, self.tokenizer, self.has_adapter, self.name = model, tokenizer, has_adapter, name
        self._gate = _AdapterGate()
        self._mergeable, self._merged, self._merge_lock = None, False, threading.Lock()
        # Turn-ending tokens, looked up once (get_vocab() builds a dict of the whole vocabulary).
        vocab = tokenizer.get_vocab()
        self.stop_ids = sorted({vocab[t] for t in (tokenizer.eos_token, "<|im_end|>", "<|eot_id|>") if t in vocab})

    @classmethod
    def from_adapter(cls, adapter_dir: str | Path, base: str | None = None, base_model=None) -> "ChatModel":
        """An adapter on its base model (`base`: a local folder; default: the one its config names), or on
        `base_model`, that base already loaded by `load_base` (the demo loads it while the run trains)."""
        from peft import PeftModel
        from transformers import AutoTokenizer

        adapter_dir = Path(adapter_dir)
        model = base_model if base_model is not None else load_base(base or adapter_base(adapter_dir))
        model = PeftModel.from_pretrained(model, str(adapter_dir))
        model.eval()
        return cls(model, AutoTokenizer.from_pretrained(adapter_dir), True, adapter_dir.parent.name)

    @classmethod
    def from_base(cls, model_path: str) -> "ChatModel":
        """A base model from a local folder (see `resolve_source`, which downloads it for the caller)."""
        from ftspace.models import load_tokenizer

        model_name = model_path
        tokenizer = load_tokenizer(model_path)
        try:
            model = load_base(model_path)
        except OSError as e:
            raise ModelError(f"{model_name}: cannot load ({str(e).splitlines()[0]}).") from None
        model.eval()
        return cls(model, tokenizer, False, model_name)

    def _inputs(self, messages):
        enc = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True)
        return {k: v.to(self.model.device) for k, v in enc.items()}

    def generation_kwargs(self, settings: GenerationSettings) -> dict:
        """`generate()` arguments for these settings: greedy at temperature 0, stopping at the template's end."""
        kwargs = dict(max_new_tokens=settings.max_new_tokens, pad_token_id=self.tokenizer.pad_token_id)
        if settings.temperature > 0:
            kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p)
        else:
            kwargs.update(do_sample=False)
        kwargs["eos_token_id"] = self.stop_ids or None
        return kwargs

    def stream(self, messages, settings: GenerationSettings | None = None, base: bool = False):
        """Yield the reply's text as it grows, one token at a time."""
        import torch

        from transformers import StoppingCriteriaList

        settings = settings or GenerationSettings()
        streamer = _TokenStreamer(self.tokenizer)
        kwargs = dict(self._inputs(messages), streamer=streamer, stopping_criteria=StoppingCriteriaList([streamer]),
                      **self.generation_kwargs(settings))
        errors = []

        def work():
            try:
                with torch.inference_mode(), self.adapter_for(base):
                    self.model.generate(**kwargs)
            except Exception as e:  # surfaced to the caller below
                errors.append(e)
                streamer.end()

        done = _generate_pool().submit(work)
        try:
            yield from streamer
        finally:  # the reader left early (closed page, new message): stop generating at the next token
            streamer.cancelled = True
        done.result()
        if errors:
            raise errors[0]

    def reply(self, messages, settings: GenerationSettings | None = None, base: bool = False) -> str:
        import torch

        settings = settings or GenerationSettings()
        inputs = self._inputs(messages)

        def work():
            with torch.inference_mode(), self.adapter_for(base):
                return self.model.generate(**inputs, **self.generation_kwargs(settings))
        out = on_compute_thread(work)
        return self.tokenizer.decode(out[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()

    def replies(self, chats: list, settings: GenerationSettings | None = None, base: bool = False) -> list[str]:
        """Replies to several chats in one batched generation (four chats took a third of the time of one at a
        time on a 2-core CPU: bench/RESULTS.md section 11)."""
        from ftspace.data.tokenize import render

        return self.complete_texts([render(self.tokenizer, chat, add_generation_prompt=True) for chat in chats],
                                   settings or GenerationSettings(), base)

    def complete_texts(self, prompts: list[str], settings: GenerationSettings, base: bool = False) -> list[str]:
        """Continuations of already rendered prompts, generated as one left-padded batch."""
        import torch

        tok = self.tokenizer
        if tok.pad_token_id is None:  # padding needs one; the mask keeps it out of the attention
            tok.pad_token = tok.eos_token
        side, tok.padding_side = tok.padding_side, "left"
        try:
            enc = tok(prompts, add_special_tokens=False, padding=True, return_tensors="pt").to(self.model.device)
        finally:
            tok.padding_side = side
        kwargs = self.generation_kwargs(settings)

        def work():
            with torch.inference_mode(), self.adapter_for(base):
                return self.model.generate(**enc, **kwargs)
        out = on_compute_thread(work)
        return [tok.decode(row[enc["input_ids"].shape[1]:], skip_special_tokens=True).strip() for row in out]

    @contextlib.contextmanager
    def adapter_for(self, base: bool):
        """The adapter off for a base reply, on for a tuned one, for this generation only. disable_adapter()
        switches the whole model, which visitors share: generations with it on may overlap each other, one
        with it off runs alone (a waiting base reply goes before later tuned ones)."""
        if not self.has_adapter:
            yield
            return
        with self._gate.base() if base else self._gate.tuned():
            self._merged_for(tuned=not base)
            with self.model.disable_adapter() if base else contextlib.nullcontext():
                yield

    def _merged_for(self, tuned: bool):
        """A float32 model answers tuned replies with the adapter merged into its weights: the adapter's extra
        matrix products per layer are a fifth of a CPU's decoding time (bench section 5). A base reply unmerges
        it first (W + BA - BA: equal to W up to float32 rounding, which greedy replies do not see; tests). In
        16-bit or quantized weights that rounding is not negligible: those keep the adapter unmerged."""
        import torch

        if self._mergeable is None:
            self._mergeable = (self.model.dtype == torch.float32 and getattr(self.model, "peft_type", None) == "LORA"
                               and not getattr(self.model.config, "quantization_config", None))
        if not self._mergeable or self._merged == tuned:
            return
        with self._merge_lock:
            if self._merged != tuned:
                (self.model.merge_adapter if tuned else self.model.unmerge_adapter)()
                self._merged = tuned


def load_base(path: str):
    """A base model's weights from a local folder, where and in which dtype `compute_placement` decides."""
    from transformers import AutoModelForCausalLM

    from ftspace.models import compute_placement

    device, dtype = compute_placement()
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map={"": device})


class _AdapterGate:
    """Many holders of `tuned()` at once, or one of `base()` alone (a readers-writer lock, writers first)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._tuned = self._base_waiting = 0
        self._base = False

    @contextlib.contextmanager
    def tuned(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._base and not self._base_waiting)
            self._tuned += 1
        try:
            yield
        finally:
            with self._cond:
                self._tuned -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def base(self):
        with self._cond:
            self._base_waiting += 1
            self._cond.wait_for(lambda: not self._base and not self._tuned)
            self._base_waiting -= 1
            self._base = True
        try:
            yield
        finally:
            with self._cond:
                self._base = False
                self._cond.notify_all()


def _generate_pool() -> ThreadPoolExecutor:
    """The compute thread's executor, made again in a forked child (a fork keeps no thread but the caller's)."""
    return _pool_of(os.getpid())


@functools.cache
def _pool_of(pid: int) -> ThreadPoolExecutor:
    """The one thread that runs this process's model computations (generate(), evaluation's forward passes),
    one at a time. torch's CPU parallelism (OpenMP) keeps a team of threads per calling thread; once two
    threads have computed, there are more OpenMP threads than cores and libgomp stops spin-waiting between
    parallel regions, so every small operation of a decoding step pays a wake-up: chat on 2 cores ran at about
    half speed once a second thread had computed, and stayed there (bench section 5: "before" against "one
    compute thread"). A long-lived thread also keeps torch's per-thread set-up out of every reply."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="ftspace-compute")


def on_compute_thread(fn, *args):
    """`fn(*args)` run on the compute thread (see `_generate_pool`), waited for; inline when already there."""
    if threading.current_thread().name.startswith("ftspace-compute"):
        return fn(*args)
    return _generate_pool().submit(fn, *args).result()


class _TokenStreamer:
    """A generate() streamer that hands out the decoded reply after every token.

    transformers' TextIteratorStreamer holds text back until a word is complete, which delays the
    first visible token by a word; here only an incomplete multi-byte character is held back.
    """

    def __init__(self, tokenizer):
        self.tokenizer, self.ids, self.prompt_seen, self.cancelled = tokenizer, [], False, False
        self.queue: queue.Queue = queue.Queue()

    def __call__(self, input_ids, scores, **kwargs):
        """As a stopping criterion: stop when the reader has gone."""
        import torch

        return torch.full((input_ids.shape[0],), self.cancelled, dtype=torch.bool, device=input_ids.device)

    def put(self, value):
        if not self.prompt_seen:  # generate() first passes the prompt
            self.prompt_seen = True
            return
        self.ids.extend(value.flatten().tolist())
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text and not text.endswith("\ufffd"):
            self.queue.put(text)

    def end(self):
        self.queue.put(None)

    def __iter__(self):
        while (text := self.queue.get()) is not None:
            yield text


def parse_tool_calls(text: str) -> list[dict]:
    """Tool calls in a reply written as <tool_call>{json}</tool_call> (how we train them); a call that is not
    valid JSON is left out.

    >>> parse_tool_calls('<tool_call>\\n{"name": "f", "arguments": {"x": 1}}\\n</tool_call>')
    [{'name': 'f', 'arguments': {'x': 1}}]
    """
    from ftspace.data.messages import tool_call_tags

    return [call for call in tool_call_tags(text) if call is not None]


# --- a small cache of loaded models, shared by the app's sessions

class GgufChat:
    """A run's GGUF export answered by llama.cpp (llama-cpp-python, when installed): the file's own chat template
    and stop tokens, the same GenerationSettings. About three times the tokens/s of the torch chat on a CPU
    (bench section 13). It holds the tuned model only: there is no adapter to turn off for a base reply."""

    def __init__(self, path: str | Path):
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ModelError("Chat with a GGUF export needs llama-cpp-python, not installed here: docs/gguf.md gives "
                             "the one install command.") from None
        self.path = Path(path)
        self.name = f"llama.cpp: {self.path.name}"
        self.llm = Llama(model_path=str(self.path), n_ctx=4096, verbose=False, n_threads=os.cpu_count() or 1)

    def stream(self, messages, settings: GenerationSettings | None = None, base: bool = False):
        """Yield the reply's text as it grows."""
        if base:
            raise ModelError(f"{self.path.name} holds the tuned model only: compare with the base in the torch chat "
                             "(without the GGUF option).")
        settings = settings or GenerationSettings()
        text = ""
        for chunk in self.llm.create_chat_completion(
                messages, max_tokens=settings.max_new_tokens, temperature=settings.temperature, top_p=settings.top_p,
                stream=True):
            text += chunk["choices"][0]["delta"].get("content") or ""
            yield text

    def reply(self, messages, settings: GenerationSettings | None = None, base: bool = False) -> str:
        text = ""
        for text in self.stream(messages, settings, base):
            pass
        return text.strip()


_CACHE: dict[tuple, ChatModel] = {}
_CACHE_LOCK = threading.Lock()
CACHE_SIZE = 2  # models kept loaded: e.g. a run's adapter and one other base model


def adapter_base(adapter_dir: Path) -> str:
    config_path = Path(adapter_dir) / "adapter_config.json"
    if not config_path.exists():
        raise ModelError(f"{Path(adapter_dir).name}: no adapter_config.json, so not a finished adapter.")
    return json.loads(config_path.read_text())["base_model_name_or_path"]


def resolve_source(source: tuple, token: str | None) -> tuple:
    """A chat source made local for this caller, as ('run', adapter_dir, base_folder) or ('base', folder).

    ('hub', repo_id) is downloaded, and any base model named by Hub id fetched, with `token` only (the
    caller's own, or None) after the Hub confirmed it may read them. Runs on CPU, before any GPU call, so a
    ZeroGPU call spends its seconds generating."""
    from ftspace.access import hub_shaped
    from ftspace.errors import escape
    from ftspace.env import multi_user
    from ftspace.models import DEFAULT, resolve_model

    kind, ref = source[:2]
    if kind == "base":
        return ("base", resolve_model(ref, progress=lambda *_: None, token=token))
    if kind == "gguf":  # a run's own export, found by ftspace.export.find_gguf
        return source
    adapter_dir = download_adapter(ref, token) if kind == "hub" else Path(ref)
    base = adapter_base(adapter_dir)
    if kind == "hub" and multi_user() and not (base == DEFAULT or hub_shaped(base)):  # by its text: no disk look
        raise ModelError(f"{ref}: its adapter_config.json names {escape(base, 80)!r} as its base model; a shared "
                         "app loads base models from the Hub only (owner/name).")
    if not Path(base).is_dir():
        base = resolve_model(base, progress=lambda *_: None, token=token)
    return ("run", str(adapter_dir), base)


def load_cached(source: tuple) -> ChatModel:
    """source: ('run', adapter_dir, base_folder) | ('base', folder) | ('gguf', file), from `resolve_source`. Loads
    on first use."""
    with _CACHE_LOCK:
        if source in _CACHE:
            model = _CACHE.pop(source)
            _CACHE[source] = model  # most recently used last
            return model
        _make_room_on_gpu(source)
        print(f"[ftspace chat] loading {_source_name(source)}", flush=True)
        model = (ChatModel.from_adapter(source[1], source[2]) if source[0] == "run" else GgufChat(source[1])
                 if source[0] == "gguf" else ChatModel.from_base(source[1]))
        _CACHE[source] = model
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        return model


_PRELOADS: dict[tuple, object] = {}  # source as source_for names it -> Future of its resolved source
# Its own lock: _CACHE_LOCK is held for a whole load (seconds), and asking for a preload must never wait for one.
_PRELOADS_LOCK = threading.Lock()



def both_replies(model, prompt: list, base_prompt: list | None, settings: GenerationSettings, other=None):
    """Stream the tuned reply, then (side by side) the second one to `base_prompt`: the base's, with the adapter off,
    or `other`'s (another run's model, its adapter on), as (first_text, second_text) pairs; without a `base_prompt`
    the second text stays empty."""
    tuned = ""
    for tuned in model.stream(prompt, settings):
        yield tuned, ""
    if base_prompt is not None:
        second = other.stream(base_prompt, settings) if other is not None else model.stream(base_prompt, settings,
                                                                                              base=True)
        for text in second:
            yield tuned, text

@functools.cache
def _preload_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="ftspace-preload")


def preload(source: tuple, token: str | None = None, log=print):
    """Load a chat source into the cache on a background thread, so the first reply does not wait for loading
    (importing transformers and PEFT, reading the weights: about 20 s for the bundled model on 2 cores).
    `source` as the Chat tab names it (('run', adapter_dir), ('hub', repo_id), ('base', name)); `token` is the
    caller's own, for downloads. Once per source while it stays loaded. Returns the Future (of the resolved
    source), or None on ZeroGPU, where a model exists only inside each GPU call."""
    if env.on_zerogpu():
        return None
    with _PRELOADS_LOCK:
        future = _PRELOADS.get(source)
        if future is not None and (not future.done() or (future.exception() is None and future.result() in _CACHE)):
            return future
        future = _PRELOADS[source] = _preload_pool().submit(_preload, source, token, log)
        return future


def _preload(source: tuple, token: str | None, log) -> tuple:
    import time

    started = time.time()
    try:
        resolved = resolve_source(source, token)
        if resolved not in _CACHE:
            load_cached(resolved)
            log(f"[ftspace chat] {_source_name(resolved)} loaded in the background in {time.time() - started:.1f} s: "
                "its first reply will not wait for loading")
        return resolved
    except Exception as e:  # the next message loads it and shows the error where the visitor sees it
        log(f"[ftspace chat] could not load {_source_name(source)} in the background: "
            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}")
        raise


def _source_name(source: tuple) -> str:
    """How the app's log names a chat source, before (run, hub, base) or after resolve_source (run, base)."""
    folder = Path(source[1])
    if source[0] == "hub":
        return f"Hub adapter {source[1]}"
    if source[0] == "gguf":
        return f"GGUF export {folder.name} (llama.cpp)"
    if source[0] == "run":
        return f"run {folder.parent.name}" if folder.name == "adapter" else f"adapter {folder.name}"
    return f"base model {folder.name}"


GPU_RESERVE_BYTES = int(float(os.environ.get("FTSPACE_GPU_RESERVE_GB", 1.0)) * 2**30)  # activations, KV cache


def _make_room_on_gpu(source: tuple):
    """Chat and a training run share one GPU. Before loading a model there: if free memory is short,
    drop our own cached chat models; if it is still short (a run is training), say so instead of
    running the GPU out of memory in the middle of someone's training."""
    import gc

    import torch

    if not torch.cuda.is_available():
        return
    need = sum(p.stat().st_size for folder in source[1:] for p in Path(folder).glob("*.safetensors"))
    need += GPU_RESERVE_BYTES
    free, _ = torch.cuda.mem_get_info()
    if free >= need:
        return
    _CACHE.clear()
    gc.collect()
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info()
    if free < need:
        raise ModelError(f"The GPU has {free / 2**30:.1f} GB free and this model needs about {need / 2**30:.1f} GB: "
                         "a training run is using it. Chat when the run has finished (or stop it); the run is "
                         "not disturbed.")


def release_gpu():
    """A training run is about to start on this machine's GPU: give back what chat holds there (the
    models load again for the next message, if there is room then)."""
    if not _CACHE:  # nothing loaded (and torch perhaps never imported: an app that has not chatted yet)
        return
    import gc

    import torch

    with _CACHE_LOCK:
        if not torch.cuda.is_available() or not _CACHE:
            return
        _CACHE.clear()
    gc.collect()
    torch.cuda.empty_cache()


def download_adapter(repo_id: str, token: str | None = None) -> Path:
    """A Hub adapter repo, downloaded with the caller's token; its base model is read from its
    adapter_config.json."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    from ftspace.access import as_hub_arg, check_hub_read
    from ftspace.access import validate_repo_name

    repo_id = validate_repo_name(repo_id)
    try:
        check_hub_read(repo_id, "model", token)
        path = Path(snapshot_download(repo_id, token=as_hub_arg(token),
                                      allow_patterns=["*.json", "*.safetensors", "*.model", "*.jinja", "*.txt"]))
    except PermissionError as e:
        raise ModelError(str(e)) from None
    except OfflineModeIsEnabled:
        raise ModelError(f"{repo_id}: the Hub is not reachable from here (offline).") from None
    except (HfHubHTTPError, OSError) as e:
        raise ModelError(f"{repo_id}: cannot download ({str(e).splitlines()[0]}): check the repo id.") from None
    if not (path / "adapter_config.json").exists():
        raise ModelError(f"{repo_id} has no adapter_config.json: it is not a PEFT adapter repo.")
    return path
