"""Load a base model and attach LoRA adapters: Unsloth where it works, plain transformers + PEFT otherwise.

Both return a stock `peft.PeftModel` and a tokenizer with a chat template, so everything after
this point (data, trainer, saving) is shared and both write the same adapter directory.
"""

from __future__ import annotations

import importlib
import sys

from ftspace.errors import ModelError


def import_unsloth() -> str | None:
    """Import unsloth (it must come before transformers, trl and peft); None if it works, else why not.

    In a process that imported one of those first (a ZeroGPU fork inherits whatever the app imported),
    Unsloth's patches would not apply: that counts as not available, said plainly, never silently."""
    early = [m for m in ("transformers", "trl", "peft") if m in sys.modules]
    if early and "unsloth" not in sys.modules:
        return (f"{', '.join(early)} was imported before unsloth in this process, so Unsloth's patches would "
                "not apply")
    try:
        importlib.import_module("unsloth")
        return None
    except Exception as e:  # unsloth raises many kinds of errors on unsupported hosts
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def choose(backend: str, log=print, method: str = "sft") -> str:
    """'unsloth' or 'hf', importing unsloth first when it may be used. Unsloth's CPU path trains SFT only,
    so preference training without a GPU runs on TRL's own trainer over transformers + PEFT."""
    if backend == "hf":
        return "hf"
    if method != "sft" and not _has_cuda():
        if backend == "unsloth":
            raise ModelError(f"backend 'unsloth' was asked for, but Unsloth's CPU path trains SFT only, not "
                             f"{method}: set backend to auto or hf (or train on a GPU).")
        log(f"Unsloth's CPU path trains SFT only: {method} runs on TRL's trainer with transformers + PEFT.")
        return "hf"
    why = import_unsloth()
    if why is None:
        return "unsloth"
    if backend == "unsloth":
        raise ModelError(f"backend 'unsloth' was asked for but Unsloth cannot be imported ({why}): "
                         "set backend to auto or hf.")
    log(f"Unsloth is not available here ({why}); training with plain transformers + PEFT.")
    return "hf"


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def load(cfg, model_path: str, backend: str, log=print):
    """(model, tokenizer, backend actually used)."""
    if backend == "unsloth":
        try:
            model, tokenizer = _load_unsloth(cfg, model_path)
            return model, tokenizer, "unsloth"
        except (ImportError, NotImplementedError, KeyError, ValueError, TypeError) as e:
            if cfg.backend == "unsloth":
                raise ModelError(f"Unsloth cannot train {cfg.model_name} ({str(e).splitlines()[0]}): "
                                 "set backend to hf.") from None
            log(f"Unsloth does not support {cfg.model_name} ({str(e).splitlines()[0]}); "
                "training with plain transformers + PEFT.")
    model, tokenizer = _load_hf(cfg, model_path)
    return model, tokenizer, "hf"


def _load_unsloth(cfg, model_path):
    from unsloth import FastLanguageModel

    from ftspace.models import compute_placement, compute_setting

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=model_path,
        max_seq_length=cfg.max_seq_length,
        load_in_4bit=cfg.load_in_4bit,
        # auto: Unsloth picks as compute_placement does (on a CPU the worker set UNSLOTH_CPU_BF16 to that decision)
        dtype=None if compute_setting(cfg.compute_dtype) == "auto" else compute_placement(cfg.compute_dtype)[1],
    )
    model = FastLanguageModel.get_peft_model(
        model,
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=_present(model, cfg.target_modules),
        use_rslora=cfg.use_rslora,
        bias="none",
        use_gradient_checkpointing="unsloth" if cfg.gradient_checkpointing else False,
        random_state=cfg.seed,
        max_seq_length=cfg.max_seq_length,
    )
    return model, _tokenizer_of(tokenizer)


def _load_hf(cfg, model_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftspace.models import compute_placement

    kwargs = {}
    if cfg.load_in_4bit:
        if not torch.cuda.is_available():
            raise ModelError("load_in_4bit needs a CUDA GPU with the hf backend: set load_in_4bit to false "
                             "(or use backend auto, where Unsloth handles it).")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_placement(cfg.compute_dtype)[1])
    device, kwargs["dtype"] = compute_placement(cfg.compute_dtype)
    if device == "cuda":
        kwargs["device_map"] = {"": 0}
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    except OSError as e:
        raise ModelError(f"{cfg.model_name}: cannot load the model ({str(e).splitlines()[0]}). Check the id or "
                         "path, and that the Hub is reachable for a Hub id.") from None
    if cfg.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    elif cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.config.use_cache = False
    torch.manual_seed(cfg.seed)
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=_present(model, cfg.target_modules), use_rslora=cfg.use_rslora,
                      bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _present(model, target_modules) -> list[str]:
    """The requested target modules that this architecture has; none at all is a config error."""
    leaves = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    found = [m for m in target_modules if m in leaves]
    if not found:
        raise ModelError(f"None of target_modules ({', '.join(target_modules)}) exist in this model: "
                         f"use some of its linear layers, e.g. {', '.join(sorted(l for l in leaves if 'proj' in l)[:6])}.")
    return found


def trainer_class_name(trainer) -> str:
    """Where the trainer's class comes from: Unsloth replaces TRL's SFTTrainer with its own (named
    UnslothSFTTrainer on a GPU, made by its CPU fallback on a CPU), so this shows who really trains."""
    cls = type(trainer)
    return f"{cls.__module__}.{cls.__qualname__}"


def _tokenizer_of(processor):
    """Unsloth may hand back a processor; the text tokenizer is what we need."""
    return getattr(processor, "tokenizer", processor)
