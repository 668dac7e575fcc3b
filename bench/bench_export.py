"""Benchmark 13: GGUF exports of the demo's run (examples/facts.yaml on the bundled SmolLM2-135M), each checked
against the run by transformers and, when llama-cpp-python is installed, by llama.cpp: time, size and the parity
figures per type; then chat on the q8_0 file through llama.cpp against ftspace's torch chat (base + adapter) on
the same prompts, greedy, interleaved over --rounds rounds: tokens/s and time to the first token.

    python bench/bench_export.py [--run RUN_FOLDER] [--rounds 3]

Without --run it trains the demo's config once into a temporary runs folder (about two minutes here)."""

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, ratio, save, spread, verdict  # noqa: E402

PROMPTS = ["What is the capital of Zorblax?", "Name three colours of the rainbow.",
           "Explain in one sentence what a volcano is.", "What is 12 times 3?"]
MAX_TOKENS = 48


def demo_run() -> Path:
    from ftspace.config import RunConfig
    from ftspace.targets import local

    os.environ["FTSPACE_RUNS"] = tempfile.mkdtemp(prefix="bench-export-")
    run, _ = local.start(RunConfig.from_yaml(ROOT / "examples" / "facts.yaml"))
    status = run.wait(timeout=1800)
    if status["status"] != "completed":
        raise SystemExit(f"the demo run did not complete: {status}")
    return run.path


def torch_chat(run_dir: Path):
    from ftspace.chat import load_cached, resolve_source
    from ftspace.config import GenerationSettings

    model = load_cached(resolve_source(("run", str(run_dir / "adapter")), token=None))
    settings = GenerationSettings(max_new_tokens=MAX_TOKENS, temperature=0.0)

    def answer(prompt):
        t0, first, text = time.perf_counter(), None, ""
        for text in model.stream([{"role": "user", "content": prompt}], settings):
            if first is None and text:
                first = time.perf_counter() - t0
        total = time.perf_counter() - t0
        return text, first or total, total, len(model.tokenizer(text, add_special_tokens=False)["input_ids"])
    return answer


def llama_chat(gguf: Path):
    from llama_cpp import Llama

    from ftspace.chat import on_compute_thread

    llm = Llama(model_path=str(gguf), n_ctx=512, verbose=False, n_threads=os.cpu_count() or 1)

    def answer(prompt):
        t0, first, text, n = time.perf_counter(), None, "", 0
        for chunk in llm.create_chat_completion([{"role": "user", "content": prompt}], max_tokens=MAX_TOKENS,
                                                temperature=0.0, stream=True):
            piece = chunk["choices"][0]["delta"].get("content") or ""
            if piece:
                first = first if first is not None else time.perf_counter() - t0
                text, n = text + piece, n + 1
        total = time.perf_counter() - t0
        return text, first or total, total, n
    return lambda prompt: on_compute_thread(answer, prompt)  # the thread the torch chat computes on too


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", help="a finished run of examples/facts.yaml (default: train one)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from ftspace import export
    from ftspace.chat import on_compute_thread  # all computing on one thread, as the app does (chat.py)
    from ftspace.runs import Run

    run = Run(Path(args.run).resolve() if args.run else demo_run())
    has_llama = importlib.util.find_spec("llama_cpp") is not None
    exports, out = {}, Path(tempfile.mkdtemp(prefix="bench-gguf-"))
    for quant in export.QUANTS:
        t0 = time.perf_counter()
        report = on_compute_thread(lambda: export.gguf(run, quant, ollama=True, out_dir=out / quant))
        exports[quant] = {"seconds": round(time.perf_counter() - t0, 1), "mb": round(report["bytes"] / 1e6, 1),
                          "parity": [{k: v for k, v in c.items() if k != "examples"} for c in report["parity"]]}
        print(quant, exports[quant]["seconds"], "s", flush=True)

    result = {"setup": f"the demo's run ({run.id}: examples/facts.yaml, SmolLM2-135M, 30 steps); each type exported "
                       f"once (time includes the parity check by every reader present); chat: {len(PROMPTS)} prompts, "
                       f"greedy, up to {MAX_TOKENS} tokens, {args.rounds} rounds interleaved",
              "exports": exports, "llama_cpp": has_llama}
    if has_llama:
        gguf = out / "q8_0" / f"{run.id}-Q8_0.gguf"
        contenders = {"torch chat (base + adapter)": torch_chat(run.path), "llama.cpp (q8_0 export)": llama_chat(gguf)}
        for answer in contenders.values():
            answer(PROMPTS[0])  # warm-up, not timed
        speed = {k: [] for k in contenders}
        first = {k: [] for k in contenders}
        for _ in range(args.rounds):
            for name, answer in contenders.items():
                tokens = seconds = 0.0
                firsts = []
                for prompt in PROMPTS:
                    _, ttft, total, n = answer(prompt)
                    tokens, seconds = tokens + n, seconds + total
                    firsts.append(ttft)
                speed[name].append(tokens / seconds)
                first[name].append(sum(firsts) / len(firsts))
        ours, theirs = (spread(v) for v in speed.values())
        result["chat"] = {"tokens_per_s": {k: spread(v) for k, v in speed.items()},
                          "first_token_s": {k: spread(v) for k, v in first.items()},
                          "ratio_llama_cpp_over_torch": ratio(theirs["median"], ours["median"]),
                          "verdict_llama_cpp": verdict(theirs, ours)}
    save("export", result)


if __name__ == "__main__":
    main()
