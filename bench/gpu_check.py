"""The GPU table of bench/RESULTS.md, in one command for anyone with a CUDA GPU:

    .venv/bin/python bench/gpu_check.py [--model PATH_OR_HUB_ID] [--steps 30] [--rounds 3]

On the machine's GPU it trains the model (default: the bundled SmolLM2-135M-Instruct) with Unsloth in
4-bit QLoRA and 16-bit LoRA, in interleaved rounds, and reads each run's tokens/s and peak GPU memory
(torch.cuda.max_memory_allocated inside the worker, the same way for both); then chats with the tuned
adapter on the GPU (tokens/s) and merges it (seconds). Writes bench/out/gpu.json with the device
named, and regenerates RESULTS.md. Without CUDA it says so and writes nothing.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import save, spread  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=os.environ.get("FTSPACE_BENCH_GPU_MODEL", "default"))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    from ftspace.models import hardware

    hw = hardware()
    if hw["kind"] != "cuda":
        print(f"skipped: no CUDA GPU here ({hw['kind']}); nothing written")
        return 0
    os.environ.setdefault("FTSPACE_RUNS", tempfile.mkdtemp(prefix="ftspace-gpu-check-"))
    from ftspace.targets import local
    from ftspace.config import RunConfig

    def train(bits: int) -> dict:
        cfg = RunConfig(model_name=a.model, dataset="example:alpaca", max_steps=a.steps, max_seq_length=a.seq,
                        per_device_train_batch_size=4, gradient_accumulation_steps=1, learning_rate=2e-4,
                        load_in_4bit=bits == 4, backend="unsloth", save_steps=10_000)
        run, _ = local.start(cfg)
        st = run.wait(timeout=1800)
        if st["status"] != "completed":
            raise SystemExit(f"{bits}-bit run {st['status']}: {st.get('error')} (see {run.log_path})")
        steps = [e for e in run.events()[0] if "tokens_per_s" in e][2:]  # past warm-up
        return {"run": run, "tokens_per_s": statistics.median(e["tokens_per_s"] for e in steps),
                "peak_gpu_mb": st["peak_memory_mb"], "backend": st["backend"],
                # the length the examples really reached (max_seq_length only caps it)
                "tokens_per_example": st["tokens_seen"] / (st["step"] * cfg.per_device_train_batch_size)}

    results = {4: [], 16: []}
    for _ in range(a.rounds):  # interleaved: 4-bit, 16-bit, 4-bit, ...
        for bits in (4, 16):
            results[bits].append(train(bits))
            print(f"{bits}-bit: {results[bits][-1]['tokens_per_s']:.0f} tokens/s, "
                  f"{results[bits][-1]['peak_gpu_mb']:.0f} MB", flush=True)

    from ftspace.chat import ChatModel, GenerationSettings
    from ftspace.hub import merge

    tuned = results[16][-1]["run"]
    chat = ChatModel.from_adapter(tuned.adapter_dir)
    messages = [{"role": "user", "content": "Write three sentences about the sea."}]
    chat.reply(messages, GenerationSettings(max_new_tokens=8))  # warm-up
    speeds = []
    for _ in range(a.rounds):
        t = time.perf_counter()
        text = chat.reply(messages, GenerationSettings(max_new_tokens=128))
        speeds.append(len(chat.tokenizer(text)["input_ids"]) / (time.perf_counter() - t))
    t = time.perf_counter()
    merge(tuned, Path(tempfile.mkdtemp(prefix="ftspace-merge-")) / "merged")
    merge_s = time.perf_counter() - t

    result = {"device": hw["name"], "memory": hw["memory"], "model": a.model, "steps": a.steps, "seq": a.seq,
              "rounds": a.rounds, "chat_device": str(chat.model.device),
              "train": {f"{bits}bit": {"tokens_per_s": spread([r["tokens_per_s"] for r in rs]),
                                       "peak_gpu_mb": spread([r["peak_gpu_mb"] for r in rs]),
                                       "tokens_per_example": round(statistics.mean(r["tokens_per_example"]
                                                                                   for r in rs), 1),
                                       "backend": rs[0]["backend"]} for bits, rs in results.items()},
              "chat_tokens_per_s": spread(speeds), "merge_s": round(merge_s, 1)}
    print(result)
    save("gpu", result)
    from bench import report

    report.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
