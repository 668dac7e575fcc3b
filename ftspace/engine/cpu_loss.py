"""A torch twin of TRL's fused LM-head kernel, for the plain-HF backend on machines without CUDA.

TRL 1.x's SFTTrainer always computes the loss through `trl.trainer.utils._ChunkedLogProbFunction`,
a Triton kernel that runs on CUDA/XPU only: on a CPU it fails with "0 active drivers". (Unsloth's CPU
backend routes it to its own torch code; the plain-HF fallback needs the same.) This computes the
same outputs in row chunks of at most CHUNK_ELEMENTS logits, so a 49k-token vocabulary never needs
the whole [tokens, vocab] matrix at once in the forward pass.
"""

from __future__ import annotations

CHUNK_ELEMENTS = 8 * 1024 * 1024  # logits per chunk: 32 MiB in float32
NAMES = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")


def chunked_log_probs(hidden, weight, bias, targets, temperature, chunk_size=None, softcap=None,
                      logit_scale=1.0, outputs=("log_probs",)):
    import torch

    if hidden.shape[0] == 0:  # keep the graph connected for an all-masked batch
        empty = (hidden @ weight.t()).float().sum(-1) * 0
        return tuple(empty if name == "log_probs" or name in outputs else None for name in NAMES)
    rows = max(1, CHUNK_ELEMENTS // max(1, weight.shape[0]))
    parts = {name: [] for name in NAMES}
    for start in range(0, hidden.shape[0], rows):
        logits = (hidden[start:start + rows] @ weight.t()).float()
        if bias is not None:
            logits = logits + bias.float()
        logits = logits * logit_scale
        if softcap is not None:
            logits = softcap * torch.tanh(logits / softcap)
        logits = logits / temperature
        logp = torch.log_softmax(logits, dim=-1)
        target = targets[start:start + rows]
        parts["log_probs"].append(logp.gather(-1, target.unsqueeze(-1)).squeeze(-1))
        if "entropy" in outputs:
            parts["entropy"].append(-(logp.exp() * logp).sum(-1))
        if "log_sum_sq_probs" in outputs:
            parts["log_sum_sq_probs"].append(torch.logsumexp(2 * logp, dim=-1).detach())
        if "mean_logits" in outputs:
            parts["mean_logits"].append(logits.mean(-1).detach())
        if "is_top1" in outputs:
            parts["is_top1"].append((logits.argmax(-1) == target).detach())
    return tuple(torch.cat(parts[name]) if parts[name] else None for name in NAMES)


class _Dispatch:
    """Drop-in for TRL's kernel: the Triton kernel on CUDA/XPU tensors, torch elsewhere."""

    kernel = None

    @classmethod
    def apply(cls, hidden, *args, **kwargs):
        if cls.kernel is not None and hidden.device.type in ("cuda", "xpu"):
            return cls.kernel.apply(hidden, *args, **kwargs)
        return chunked_log_probs(hidden, *args, **kwargs)


def install() -> bool:
    """Route TRL's fused LM head through `_Dispatch` (idempotent); False if this TRL has none."""
    from trl.trainer import utils

    current = getattr(utils, "_ChunkedLogProbFunction", "absent")
    if current == "absent":
        return False
    if getattr(current, "__name__", "") == "_Dispatch" or getattr(current, "_unsloth_cpu_dispatch", False):
        return True
    _Dispatch.kernel = current
    utils._ChunkedLogProbFunction = _Dispatch
    return True
