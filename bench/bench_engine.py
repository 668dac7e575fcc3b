"""Benchmarks 1 and 2: ftspace's training path against bare scripts, and Unsloth against plain HF.

Same model, data, steps, batch and seed for every contender, run one after another in this session
(interleaved over --rounds), so the ratios hold on a noisy machine. tokens/s = tokens trained / the
Trainer's train_runtime; memory = peak RSS of the training process (peak allocated VRAM on a GPU).
GPU section: a 1B-class model (local path, --gpu-model) with 4-bit and 16-bit LoRA at length 2048.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import OUT, has_cuda, ratio, run_json, save  # noqa: E402


def messages_file(rows) -> str:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "bench-data-messages.jsonl"
    with open(path, "w") as fh:
        for r in rows:
            fh.write(json.dumps({"messages": r["messages"]}) + "\n")
    return str(path)


def ours(model, data, steps, batch, max_len, backend, load_in_4bit=False) -> dict:
    from ftspace import runs
    from ftspace.config import RunConfig

    os.environ["FTSPACE_RUNS"] = tempfile.mkdtemp(prefix="ftspace-bench-runs-")
    cfg = RunConfig(model_name=model, dataset=data, max_steps=steps, per_device_train_batch_size=batch,
                    gradient_accumulation_steps=1, max_seq_length=max_len, learning_rate=1e-3, lora_r=16,
                    lora_alpha=32, gradient_checkpointing=False, save_steps=10**6, backend=backend,
                    load_in_4bit=load_in_4bit, train_on_responses_only=False)
    run, _ = runs.start(cfg)
    st = run.wait()
    if st["status"] != "completed":
        raise RuntimeError(f"ours ({backend}) {st['status']}: {st.get('error')}")
    return {"tokens": st["tokens_seen"], "train_runtime_s": st["train_runtime_s"],
            "tokens_per_s": st["tokens_seen"] / st["train_runtime_s"], "peak_rss_mb": st["peak_memory_mb"]}


def bare(engine, model, data, steps, batch, max_len, load_in_4bit=False) -> dict:
    args = ["bench/bare_train.py", "--engine", engine, "--model", model, "--data", data, "--steps", str(steps),
            "--batch", str(batch), "--max-len", str(max_len)] + (["--load-in-4bit"] if load_in_4bit else [])
    return run_json(args)


def summarize(samples: list[dict]) -> dict:
    return {"tokens_per_s": round(statistics.median(s["tokens_per_s"] for s in samples), 1),
            "peak_mb": round(statistics.median((s.get("peak_vram_mb") or s["peak_rss_mb"]) for s in samples), 1),
            "runs": len(samples)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--gpu-model", default=os.environ.get("FTSPACE_BENCH_GPU_MODEL", ""),
                   help="local path of a 1B-class model for the GPU section")
    a = p.parse_args()

    from ftspace.data import load_dataset
    from ftspace.models import ensure_default_model

    model = str(ensure_default_model(progress=lambda *_: None))
    rows, _ = load_dataset("example:facts")
    data = messages_file(rows)
    contenders = {
        "ours_unsloth": lambda: ours(model, data, a.steps, a.batch, a.max_len, "unsloth"),
        "bare_unsloth": lambda: bare("unsloth", model, data, a.steps, a.batch, a.max_len),
        "ours_hf": lambda: ours(model, data, a.steps, a.batch, a.max_len, "hf"),
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
                  "max_seq_length": a.max_len, "rounds": a.rounds, "device": "cuda" if has_cuda() else "cpu"},
        "contenders": s,
        "engine_overhead": {
            "unsloth_tokens_per_s_ratio": ratio(s["ours_unsloth"]["tokens_per_s"], s["bare_unsloth"]["tokens_per_s"]),
            "unsloth_peak_memory_ratio": ratio(s["ours_unsloth"]["peak_mb"], s["bare_unsloth"]["peak_mb"]),
            "trl_tokens_per_s_ratio": ratio(s["ours_hf"]["tokens_per_s"], s["bare_trl"]["tokens_per_s"]),
            "trl_peak_memory_ratio": ratio(s["ours_hf"]["peak_mb"], s["bare_trl"]["peak_mb"]),
            "target": "tokens/s ratio >= 0.97, memory ratio <= 1.0",
        },
        "backends": {
            "unsloth_over_hf_tokens_per_s": ratio(s["ours_unsloth"]["tokens_per_s"], s["ours_hf"]["tokens_per_s"]),
            "unsloth_over_hf_peak_memory": ratio(s["ours_unsloth"]["peak_mb"], s["ours_hf"]["peak_mb"]),
        },
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
