"""A merged checkpoint written as one GGUF file with the `gguf` package (llama.cpp's own Python library): its
writer, its quantizers, its table of tensor names (TensorNameMap) and its reader of special tokens (SpecialVocab).
What the package leaves to each converter follows llama.cpp's convert_hf_to_gguf.py: Llama's rotary permutation of
the query and key weights, Gemma's norm offset (+1), Llama 3's rope factors, the tokenizer's pre-tokenizer named as
llama.cpp names it, and which tensors stay float32 (every 1-D one: norms, rope factors).

    >>> permute_rotary(__import__("torch").arange(8.).reshape(8, 1), 2, 2).flatten().tolist()
    [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
from pathlib import Path

import numpy as np

from ftspace.errors import FtspaceError

# transformers' class -> llama.cpp's architecture name (gguf.MODEL_ARCH_NAMES); every one the catalogue has
ARCHITECTURES = {"LlamaForCausalLM": "llama", "Qwen3ForCausalLM": "qwen3", "Gemma3ForCausalLM": "gemma3"}
QUANTS = ("f16", "bf16", "q8_0")  # written here with the gguf package's numpy quantizers
K_QUANTS = ("q2_k", "q3_k_m", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k")  # need llama.cpp's llama-quantize

# A tokenizer.json pre-tokenizer -> the name llama.cpp gives the same splitting (its llama-vocab.cpp regexes)
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                 r"\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")


class ExportError(FtspaceError):
    """An export refused or failed; nothing half-written is left."""


def architecture(names: list[str]) -> str:
    """llama.cpp's name for a checkpoint's architecture (its config's `architectures`), or the one line refusing it.

    >>> architecture(["Qwen3ForCausalLM"])
    'qwen3'
    """
    for name in names:
        if name in ARCHITECTURES:
            return ARCHITECTURES[name]
    raise ExportError(f"GGUF export supports {', '.join(sorted(ARCHITECTURES))}; this model is "
                      f"{names[0] if names else 'unknown'}: "
                      "export the merged 16-bit model instead.")


def permute_rotary(weights, n_head: int, n_head_kv: int | None):
    """Llama's q/k projection rows reordered from transformers' rotary layout (halves) to llama.cpp's (pairs)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def pre_tokenizer(tokenizer_json: dict) -> str:
    """llama.cpp's name for how a byte-level BPE tokenizer splits text before merging, read from tokenizer.json.

    >>> pre_tokenizer({"pre_tokenizer": {"type": "ByteLevel", "use_regex": True}})
    'gpt-2'
    """
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        regex = (steps[0].get("pattern") or {}).get("Regex")
        for name, known in (("llama-bpe", _LLAMA3_SPLIT), ("qwen2", _QWEN2_SPLIT)):
            if regex == known:
                return name
    raise ExportError(f"This tokenizer splits text in a way llama.cpp has no name for here ({'+'.join(map(str, kinds))}"
                      "): export the merged 16-bit model instead.")


def _rope(config: dict) -> dict:
    """The rope parameters of the full-attention layers (transformers 5 keeps them in `rope_parameters`)."""
    params = config.get("rope_parameters") or {}
    params = params.get("full_attention", params)
    return {"rope_theta": config.get("rope_theta"), **(config.get("rope_scaling") or {}), **params}


def _rope_factors(config: dict, head_dim: int):
    """Llama 3's frequency factors, as llama.cpp wants them in a `rope_freqs` tensor (None for other ropes)."""
    rope = _rope(config)
    if str(rope.get("rope_type", rope.get("type", ""))).lower() != "llama3":
        return None
    base = rope.get("rope_theta") or 10000.0
    factor, low, high = rope.get("factor", 8.0), rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old = rope.get("original_max_position_embeddings", 8192)
    out = []
    for i in range(0, head_dim, 2):
        wavelen = 2 * math.pi * base ** (i / head_dim)
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def _parameters(w, arch: str, config: dict, file_type) -> int:
    """The hyperparameters llama.cpp reads for `arch`; returns the head dimension."""
    heads, kv = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    w.add_context_length(config.get("max_position_embeddings", 131072 if arch == "gemma3" else 4096))
    w.add_embedding_length(config["hidden_size"])
    w.add_block_count(config["num_hidden_layers"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    w.add_rope_freq_base(_rope(config).get("rope_theta") or (1_000_000.0 if arch == "gemma3" else 10000.0))
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_file_type(file_type)
    if arch == "llama":
        w.add_vocab_size(config["vocab_size"])
        w.add_rope_dimension_count(head_dim)
    if arch == "gemma3":
        if config.get("final_logit_softcapping"):
            w.add_final_logit_softcapping(config["final_logit_softcapping"])
        if config.get("sliding_window"):
            w.add_sliding_window(config["sliding_window"])
    return head_dim


SENTENCEPIECE = "sentencepiece"  # a SentencePiece-style BPE vocabulary (Gemma's): llama.cpp's "llama" tokenizer


def _sentencepiece_style(tokenizer_json: dict) -> bool:
    """Spaces written as U+2581 and bytes as <0xNN> tokens: a SentencePiece BPE model in tokenizers' form."""
    normalizer = tokenizer_json.get("normalizer") or {}
    steps = normalizer.get("normalizers", []) if normalizer.get("type") == "Sequence" else [normalizer]
    pre = tokenizer_json.get("pre_tokenizer") or {}
    return bool((tokenizer_json.get("model") or {}).get("byte_fallback")) and (
        pre.get("type") == "Metaspace" or any(s.get("type") == "Replace" and s.get("content") == "\u2581"
                                               for s in steps))


def tokenizer_kind(tokenizer_dir: Path) -> str:
    """How llama.cpp is to split text for the tokenizer in `tokenizer_dir`: its pre-tokenizer name for a byte-level
    BPE vocabulary, or SENTENCEPIECE; or the one line refusing it (checked before any model loads)."""
    try:
        tokenizer_json = json.loads((Path(tokenizer_dir) / "tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ExportError("GGUF export needs the run's tokenizer.json, and its adapter folder has none readable: "
                          "export the merged 16-bit model instead.") from None
    model = tokenizer_json.get("model") or {}
    if model.get("type") != "BPE" or "merges" not in model:
        raise ExportError(f"GGUF export writes BPE vocabularies; this run's is {model.get('type') or 'unknown'}: "
                          "export the merged 16-bit model instead.")
    if _sentencepiece_style(tokenizer_json):
        return SENTENCEPIECE
    return pre_tokenizer(tokenizer_json)


def _merged_scores(merges: list) -> dict[str, float]:
    """SentencePiece's scores from tokenizers' merges: the token a merge makes scores minus its rank, so llama.cpp's
    SentencePiece tokenizer (highest-scoring pair first) merges in the order BPE does.

    >>> _merged_scores(["a b", ["ab", "c"], "a b"])
    {'ab': -0.0, 'abc': -1.0}
    """
    scores = {}
    for rank, merge in enumerate(merges):
        a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
        scores.setdefault(a + b, -float(rank))
    return scores


def _vocabulary(w, tokenizer, tokenizer_dir: Path, config: dict) -> None:
    """Tokens, their types (and scores), merges and special tokens, as convert_hf_to_gguf.py writes a byte-level
    BPE tokenizer ("gpt2") or a SentencePiece one ("llama")."""
    import gguf

    kind = tokenizer_kind(tokenizer_dir)
    vocab = tokenizer.get_vocab()
    n_vocab = max(config["vocab_size"], max(vocab.values()) + 1)
    reverse = {i: t for t, i in vocab.items()}
    added = tokenizer.added_tokens_decoder
    scores = {}
    if kind == SENTENCEPIECE:
        model = json.loads((Path(tokenizer_dir) / "tokenizer.json").read_text(encoding="utf-8"))["model"]
        scores = _merged_scores(model["merges"])
    tokens, types, token_scores = [], [], []
    for i in range(n_vocab):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(added[i].content)
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(reverse[i])
            byte = kind == SENTENCEPIECE and re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", reverse[i])
            types.append(gguf.TokenType.BYTE if byte else gguf.TokenType.NORMAL)
        token_scores.append(scores.get(tokens[-1], 0.0))
    if kind == SENTENCEPIECE:
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_scores(token_scores)
        w.add_add_space_prefix(False)  # tokenizers' form prepends nothing (Gemma's converter sets the same)
    else:
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(kind)
    w.add_token_list(tokens)
    w.add_token_types(types)
    special = gguf.SpecialVocab(tokenizer_dir, load_merges=kind != SENTENCEPIECE, n_vocab=len(tokens))
    special.chat_template = None  # written by the caller: the run's own
    special.add_special_token = {}  # what the tokenizer really does, below
    special.add_to_gguf(w, quiet=True)
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    w.add_add_bos_token(bool(tokenizer.bos_token_id is not None and probe[:1] == [tokenizer.bos_token_id]))
    w.add_add_eos_token(bool(tokenizer.eos_token_id is not None and probe[-1:] == [tokenizer.eos_token_id]))


def write_gguf(model, tokenizer, tokenizer_dir: Path, path: Path, quant: str, chat_template: str, *,
               name: str, sampling: dict, progress=lambda done, total: None) -> Path:
    """`model` (a merged transformers model, float32 or 16-bit) as `path` in `quant`. The file is written beside
    as PATH.part and renamed at the end: an error (a full disk among them) leaves nothing behind."""
    import gguf
    import torch

    config = model.config.to_dict()
    arch = architecture(config.get("architectures") or [type(model).__name__])
    qtype = {"f16": gguf.GGMLQuantizationType.F16, "bf16": gguf.GGMLQuantizationType.BF16,
             "q8_0": gguf.GGMLQuantizationType.Q8_0}[quant]
    file_type = {"f16": gguf.LlamaFileType.MOSTLY_F16, "bf16": gguf.LlamaFileType.MOSTLY_BF16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quant]
    part = path.with_name(path.name + ".part")
    w = gguf.GGUFWriter(None, arch)
    try:
        w.add_type(gguf.GGUFType.MODEL)
        w.add_name(name)
        head_dim = _parameters(w, arch, config, file_type)
        _vocabulary(w, tokenizer, tokenizer_dir, config)
        w.add_chat_template(chat_template)
        if "temperature" in sampling:
            w.add_sampling_temp(float(sampling["temperature"]))
        if "top_p" in sampling:
            w.add_sampling_top_p(float(sampling["top_p"]))
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)

        n_blocks = config["num_hidden_layers"]
        names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], n_blocks)
        heads, kv = config["num_attention_heads"], config.get("num_key_value_heads")
        tied = config.get("tie_word_embeddings", arch == "gemma3")
        state = {k: v for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}
        if (factors := _rope_factors(config, head_dim)) is not None:
            w.add_tensor(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", factors,
                         raw_dtype=gguf.GGMLQuantizationType.F32)
        for i, (hf_name, tensor) in enumerate(state.items()):
            gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if gguf_name is None:
                raise ExportError(f"GGUF export has no llama.cpp name for the tensor {hf_name} of this {arch} model: "
                                  "export the merged 16-bit model instead.")
            data = tensor.detach().to(torch.float32)
            if arch == "llama" and hf_name.endswith("q_proj.weight"):
                data = permute_rotary(data, heads, heads)
            elif arch == "llama" and hf_name.endswith("k_proj.weight"):
                data = permute_rotary(data, heads, kv)
            if arch == "gemma3" and hf_name.endswith("norm.weight"):
                data = data + 1  # Gemma3RMSNorm multiplies by (1 + weight); llama.cpp by weight
            data = data.numpy()
            kind = qtype if data.ndim > 1 else gguf.GGMLQuantizationType.F32
            if kind == gguf.GGMLQuantizationType.Q8_0 and data.shape[-1] % 32:
                kind = gguf.GGMLQuantizationType.F16  # rows q8_0 cannot split in blocks of 32 (as llama.cpp does)
            w.add_tensor(gguf_name, gguf.quants.quantize(data, kind), raw_dtype=kind)
            progress(i + 1, len(state))
        part.parent.mkdir(parents=True, exist_ok=True)
        w.write_header_to_file(part)
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(part, path)
        return path
    except OSError as e:
        fix = ("free some disk space and export again" if e.errno == errno.ENOSPC
               else "check the folder, then export again")
        raise ExportError(f"Writing {path.name} failed ({e.strerror or e}): {fix}; nothing was kept.") from None
    finally:
        w.close()
        part.unlink(missing_ok=True)
