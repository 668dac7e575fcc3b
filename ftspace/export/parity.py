"""Does the export behave like the run? The GGUF is read back by readers that are not our writer (transformers'
GGUF loader, and llama.cpp through llama-cpp-python when it is installed) and compared with the tuned model on the
same prompts: greedy answers, next-token logits along the run's own answers, and perplexity on reference replies.

A greedy answer may change where the run itself hesitated: two candidate tokens closer than the quantization's
error. Such a change is reported, never failed; a change where the run was decided (its top token ahead by more
than twice the tolerance) fails the export, as does a logit difference beyond the tolerance.
"""

from __future__ import annotations

import math
from pathlib import Path

from ftspace.models import gguf_parsed_once


# How far the export's next-token distributions may drift from the run's, per type: mean KL divergence per
# token (nats) along the run's own answers. The figures each reader gives on the demo's run are in bench section 13
# (bench/bench_export.py): at most 2e-4 for q8_0 read by llama.cpp, which also rounds activations to 8 bits; on
# held-out questions alone they were up to 2e-3. The limits sit ten times above the worst seen; k-quants' near
# llama.cpp's own KL figures for q4_k_m (~0.01-0.03 on 1-8B models).
KL_MAX = {"f16": 0.001, "bf16": 0.005, "q8_0": 0.02, "k": 0.1}
PERPLEXITY_RATIO_MAX = {"f16": 1.01, "bf16": 1.03, "q8_0": 1.05, "k": 1.15}
DECIDED_NATS = 1.0  # a greedy token the run chose over the runner-up by more than this (e: 2.7x likelier)


def reference(model, tokenizer, prompts: list[list[dict]], replies: list[str], max_new_tokens: int) -> list[dict]:
    """What the tuned model does, computed before the merge: per prompt its greedy answer (token ids, up to and
    with the end-of-turn token), the log-probabilities along prompt + answer, and reference replies' tokens."""
    import torch

    out = []
    for messages, reply in zip(prompts, replies):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)["input_ids"]
        with torch.no_grad():
            gen = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        answer = gen[0, ids.shape[1]:].tolist()
        reply_ids = tokenizer(reply, add_special_tokens=False)["input_ids"] if reply else []
        row = {"prompt": text, "prompt_ids": ids[0].tolist(), "answer_ids": answer, "reply_ids": reply_ids}
        row["answer_logprobs"] = _logprobs(model, row["prompt_ids"], answer)
        row["reply_logprobs"] = _logprobs(model, row["prompt_ids"], reply_ids)
        out.append(row)
    return out


def _logprobs(model, prompt_ids: list[int], continuation: list[int]):
    """log-softmax of the next-token logits at each token of `continuation` ([n, vocab] float32; None if empty)."""
    import torch

    if not continuation:
        return None
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + continuation])).logits[0, len(prompt_ids) - 1:-1]
    return torch.log_softmax(logits.float(), dim=-1)


HEAD_DIM_UNREAD = ("qwen3",)  # transformers' GGUF loader leaves out these architectures' head size


def load_gguf(path: Path, arch: str):
    """The GGUF as transformers reads it (dequantized to float32). For the architectures whose head size its
    loader leaves out (Qwen3: 128 where hidden/heads is 64), the size is taken from the file's own `key_length`,
    never from our model."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()  # its dequantizing bar would cut through the export's own
    with gguf_parsed_once():
        config = None
        if arch in HEAD_DIM_UNREAD:
            import gguf

            config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
            config.head_dim = int(gguf.GGUFReader(str(path)).fields[f"{arch}.attention.key_length"].contents())
        return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, config=config,
                                                    dtype=torch.float32).eval()


def _figures(reader: str, kind: str, expected: list[dict], answers: list[list[int]], along, tokenizer) -> dict:
    """The comparison, from the export's greedy `answers` and `along(row, which)`: its log-probabilities along the
    run's answer ("answer") or the reference reply ("reply")."""
    import torch

    kls, same_top, n_top, nll_run, nll_export, changes, decided = [], 0, 0, [], [], [], []
    examples = [{"prompt": row["prompt"][-200:], "run": tokenizer.decode(row["answer_ids"]),
                 "export": tokenizer.decode(answer)} for row, answer in zip(expected, answers)]
    for row, answer in zip(expected, answers):
        for which in ("answer", "reply"):
            ids, run_lp = row[f"{which}_ids"], row[f"{which}_logprobs"]
            if run_lp is None:
                continue
            export_lp = along(row, which)
            kls.append((run_lp.exp() * (run_lp - export_lp)).sum(-1))
            same_top += int((run_lp.argmax(-1) == export_lp.argmax(-1)).sum())
            n_top += len(ids)
            nll_run += (-run_lp[range(len(ids)), ids]).tolist()
            nll_export += (-export_lp[range(len(ids)), ids]).tolist()
        if answer != row["answer_ids"]:
            at = next((i for i, (a, b) in enumerate(zip(answer, row["answer_ids"])) if a != b),
                      min(len(answer), len(row["answer_ids"])))
            lp = row["answer_logprobs"]
            margin = float(lp[at].topk(2).values.diff().abs()) if lp is not None and at < len(lp) else 0.0
            change = {"at_token": at, "run_margin_nats": round(margin, 3), "run": tokenizer.decode(row["answer_ids"]),
                      "export": tokenizer.decode(answer)}
            (decided if margin > DECIDED_NATS else changes).append(change)
    kl = torch.cat(kls) if kls else torch.zeros(1)
    ratio = math.exp((sum(nll_export) - sum(nll_run)) / len(nll_run)) if nll_run else 1.0
    return {"reader": reader, "prompts": len(expected),
            "same_greedy_answers": len(expected) - len(changes) - len(decided),
            "mean_kl": float(kl.mean()), "max_kl": float(kl.max()), "kl_max": KL_MAX[kind],
            "same_top_token": round(same_top / max(n_top, 1), 4), "perplexity_ratio": round(ratio, 5),
            "perplexity_ratio_max": PERPLEXITY_RATIO_MAX[kind], "hesitant_changes": changes,
            "decided_changes": decided, "examples": examples}


def compare(model, tokenizer, expected: list[dict], kind: str, max_new_tokens: int) -> dict:
    """The export read back by transformers (`model`) against `expected` (from `reference`)."""
    import torch

    answers = []
    for row in expected:
        ids = torch.tensor([row["prompt_ids"]])
        with torch.no_grad():
            gen = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        answers.append(gen[0, ids.shape[1]:].tolist())
    return _figures("transformers", kind, expected, answers,
                    lambda row, which: _logprobs(model, row["prompt_ids"], row[f"{which}_ids"]), tokenizer)


def compare_llama_cpp(path: Path, tokenizer, expected: list[dict], kind: str, max_new_tokens: int,
                      stop_ids: list[int]) -> dict | None:
    """The export run by llama.cpp (llama-cpp-python, when installed; else None): its own tokenizer on the run's
    prompt strings (`same_prompt_tokens`), its greedy answers and its log-probabilities."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    import os

    import numpy as np
    import torch

    llm = Llama(model_path=str(path), n_ctx=max(len(r["prompt_ids"]) + max(len(r["answer_ids"]), len(r["reply_ids"]))
                                                 for r in expected) + max_new_tokens + 8,
                logits_all=True, verbose=False, n_threads=os.cpu_count() or 1)
    add_bos = llm.metadata.get("tokenizer.ggml.add_bos_token") == "true"

    def scores(ids: list[int]):
        llm.reset()
        llm.eval(ids)
        return np.array(llm.scores[:len(ids)], dtype=np.float32)

    same_tokens, answers = 0, []
    for row in expected:
        # A template that writes the BOS itself (Gemma's, Llama 3's) gets no second one: as llama.cpp's chat does
        bos = add_bos and not (tokenizer.bos_token and row["prompt"].startswith(tokenizer.bos_token))
        if llm.tokenize(row["prompt"].encode("utf-8"), add_bos=bos, special=True) == row["prompt_ids"]:
            same_tokens += 1
        ids = list(row["prompt_ids"])
        for _ in range(max_new_tokens):
            ids.append(int(scores(ids)[-1].argmax()))
            if ids[-1] in stop_ids:
                break
        answers.append(ids[len(row["prompt_ids"]):])

    def along(row, which):
        cont = row[f"{which}_ids"]
        logits = torch.from_numpy(scores(row["prompt_ids"] + cont)[len(row["prompt_ids"]) - 1:-1])
        return torch.log_softmax(logits, dim=-1)

    figures = _figures("llama.cpp", kind, expected, answers, along, tokenizer)
    figures["same_prompt_tokens"] = same_tokens
    llm.close()
    return figures


def failures(figures: dict) -> list[str]:
    """What differed beyond the limits, one phrase each (empty: the export behaves like the run)."""
    out, by = [], figures["reader"]
    if figures.get("same_prompt_tokens", figures["prompts"]) < figures["prompts"]:
        out.append(f"{by} splits {figures['prompts'] - figures['same_prompt_tokens']} of the prompts into other tokens")
    if figures["mean_kl"] > figures["kl_max"]:
        out.append(f"{by}'s next-token distributions drift {figures['mean_kl']:.4f} nats per token from the run's "
                   f"(at most {figures['kl_max']})")
    for c in figures["decided_changes"]:
        out.append(f"{by}'s greedy answer changed at token {c['at_token']} where the run was decided "
                   f"({c['run']!r} became {c['export']!r})")
    if figures["perplexity_ratio"] > figures["perplexity_ratio_max"]:
        out.append(f"{by}'s perplexity on the run's answers rose {figures['perplexity_ratio']:.3f}x "
                   f"(at most {figures['perplexity_ratio_max']})")
    return out
