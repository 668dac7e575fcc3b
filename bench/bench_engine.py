"""Benchmarks 1 and 2: ftspace's training path against bare scripts, and Unsloth against plain HF.

Same model, data, steps, batch and seed for every contender, interleaved over --rounds (5), so drift
in the machine's speed hits all alike; each contender's min / median / max is reported and a difference
is called only where the spreads do not overlap. tokens/s = tokens trained / the Trainer's
train_runtime; ours runs as shipped, writing its (atomic) checkpoints every --save-steps inside that
time, the bare scripts save nothing. Memory = the training process's own peak RSS (VmHWM; peak allocated
VRAM on a GPU). The bare TRL script installs ftspace's CPU loss patch (TRL 1.15's loss kernel is
CUDA-only: without it TRL does not train on CPU at all), so on CPU it is TRL + that patch.
GPU section: a 1B-class model (local path, --gpu-model) with 4-bit and 16-bit LoRA, max_seq_length 2048
(the examples are the bundled facts rows: the length they reach is recorded as tokens_per_example).
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import OUT, has_cuda, ratio, run_json, save, spread, verdict  # noqa: E402


def messages_file(rows) -> str:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "bench-data-messages.jsonl"
    with open(path, "w") as fh:
        for r in rows:
            fh.write(json.dumps({"messages": r["messages"]}) + "\n")
    return str(path)


def ours(model, data, steps, batch, max_len, backend, load_in_4bit=False, save_steps=10) -> dict:
    from ftspace.targets import local
    from ftspace.config import RunConfig

    os.environ["FTSPACE_RUNS"] = tempfile.mkdtemp(prefix="ftspace-bench-runs-")
    cfg = RunConfig(model_name=model, dataset=data, max_steps=steps, per_device_train_batch_size=batch,
                    gradient_accumulation_steps=1, max_seq_length=max_len, learning_rate=1e-3, lora_r=16,
                    lora_alpha=32, gradient_checkpointing=False, save_steps=save_steps, backend=backend,
                    load_in_4bit=load_in_4bit, train_on_responses_only=False)
    run, _ = local.start(cfg)
    st = run.wait()
    if st["status"] != "completed":
        raise RuntimeError(f"ours ({backend}) {st['status']}: {st.get('error')}")
    return {"tokens": st["tokens_seen"], "train_runtime_s": st["train_runtime_s"],
            "tokens_per_s": st["tokens_seen"] / st["train_runtime_s"], "peak_rss_mb": st["peak_memory_mb"],
            "tokens_per_example": round(st["tokens_seen"] / (st["step"] * batch), 1)}  # the length reached


def bare(engine, model, data, steps, batch, max_len, load_in_4bit=False) -> dict:
    args = ["bench/bare_train.py", "--engine", engine, "--model", model, "--data", data, "--steps", str(steps),
            "--batch", str(batch), "--max-len", str(max_len)] + (["--load-in-4bit"] if load_in_4bit else [])
    return run_json(args)


def summarize(samples: list[dict]) -> dict:
    return {"tokens_per_s": spread(s["tokens_per_s"] for s in samples),
            "peak_mb": spread((s.get("peak_vram_mb") or s["peak_rss_mb"]) for s in samples)}


def compare(s: dict, a: str, b: str) -> dict:
    """a against b: ratios of medians, and whether the spreads even allow calling a difference."""
    return {"tokens_per_s_ratio": ratio(s[a]["tokens_per_s"]["median"], s[b]["tokens_per_s"]["median"]),
            "tokens_per_s": verdict(s[a]["tokens_per_s"], s[b]["tokens_per_s"]),
            "peak_memory_ratio": ratio(s[a]["peak_mb"]["median"], s[b]["peak_mb"]["median"]),
            "peak_memory": verdict(s[a]["peak_mb"], s[b]["peak_mb"])}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--save-steps", type=int, default=10, help="ours checkpoints this often (the quick-demo preset)")
    p.add_argument("--gpu-model", default=os.environ.get("FTSPACE_BENCH_GPU_MODEL", ""),
                   help="local path of a 1B-class model for the GPU section")
    a = p.parse_args()

    from ftspace.data import load_dataset
    from ftspace.models import ensure_default_model

    model = str(ensure_default_model(progress=lambda *_: None))
    rows, _ = load_dataset("example:facts")
    data = messages_file(rows)
    contenders = {
        "ours_unsloth": lambda: ours(model, data, a.steps, a.batch, a.max_len, "unsloth", save_steps=a.save_steps),
        "bare_unsloth": lambda: bare("unsloth", model, data, a.steps, a.batch, a.max_len),
        "ours_hf": lambda: ours(model, data, a.steps, a.batch, a.max_len, "hf", save_steps=a.save_steps),
        "bare_trl": lambda: bare("trl", model, data, a.steps, a.batch, a.max_len),
    }
    samples = {name: [] for name in contenders}
    for _ in range(a.rounds):
        for name, fn in contenders.items():
            samples[name].append(fn())
            print(name, samples[name][-1], flush=True)
    s = {name: summarize(v) for name, v in samples.items()}
    result = {
        "setup": {"model": "SmolLM2-135M-Instruct (bundled)", "steps": a.steps, "batch": a.batch,
                  "max_seq_length": a.max_len, "rounds": a.rounds, "ours_save_steps": a.save_steps,
                  "device": "cuda" if has_cuda() else "cpu"},
        "contenders": s,
        "engine_overhead": {"unsloth": compare(s, "ours_unsloth", "bare_unsloth"),
                            "trl": compare(s, "ours_hf", "bare_trl"),
                            "target": "tokens/s ratio >= 0.97, memory ratio <= 1.0"},
        "backends": compare(s, "ours_unsloth", "ours_hf"),
        "samples": samples,
    }
    if has_cuda() and a.gpu_model:
        gpu = {}
        for bits in (4, 16):
            u = ours(a.gpu_model, data, a.steps, 4, 2048, "unsloth", load_in_4bit=bits == 4)
            h = ours(a.gpu_model, data, a.steps, 4, 2048, "hf", load_in_4bit=bits == 4)
            gpu[f"{bits}bit"] = {"unsloth": u, "hf": h, "speedup": ratio(u["tokens_per_s"], h["tokens_per_s"]),
                                 "memory_ratio": ratio(u["peak_rss_mb"], h["peak_rss_mb"])}
        result["gpu"] = gpu
    else:
        result["gpu"] = "skipped: no CUDA" if not has_cuda() else "skipped: pass --gpu-model PATH"
        print("GPU section", result["gpu"])
    save("engine", result)


if __name__ == "__main__":
    main()
