"""Regenerate bench/RESULTS.md from bench/out/*.json (written by the bench_*.py scripts)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import OUT, ROOT  # noqa: E402


def load(name):
    path = OUT / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def machine_line(r):
    m = r["machine"]
    hw = m["hardware"]
    where = hw.get("name", hw["kind"]) + (f", {hw.get('memory')}" if hw.get("memory") else "")
    return f"_Measured {m['date']} on {where}, {m['cpu_count']} CPU cores, Python {m['python']}._"


def main():
    lines = ["# Benchmarks", "", "Regenerate with `make bench` (runs every `bench/bench_*.py`, then this report).",
             "Every figure is a ratio of two contenders measured one after the other in the same session.", ""]
    e = load("engine")
    if e:
        o, c = e["engine_overhead"], e["contenders"]
        lines += ["## 1. Engine overhead: ftspace against bare scripts", machine_line(e), "",
                  f"Setup: {e['setup']}", "", "| contender | tokens/s | peak memory (MB) |", "| --- | --- | --- |"]
        lines += [f"| {k} | {v['tokens_per_s']} | {v['peak_mb']} |" for k, v in c.items()]
        lines += ["", f"- Unsloth path: tokens/s ratio **{o['unsloth_tokens_per_s_ratio']}**, "
                      f"memory ratio **{o['unsloth_peak_memory_ratio']}** (ours / bare Unsloth script)",
                  f"- TRL+PEFT path: tokens/s ratio **{o['trl_tokens_per_s_ratio']}**, "
                  f"memory ratio **{o['trl_peak_memory_ratio']}** (ours / bare TRL script)",
                  f"- Target: {o['target']}", "",
                  "## 2. Backends: Unsloth against plain HF + PEFT", "",
                  f"- tokens/s: Unsloth / HF = **{e['backends']['unsloth_over_hf_tokens_per_s']}**; "
                  f"peak memory: Unsloth / HF = **{e['backends']['unsloth_over_hf_peak_memory']}** (CPU, RSS)",
                  f"- GPU (1B-class model, 4-bit and 16-bit LoRA, length 2048): "
                  f"{e['gpu'] if isinstance(e['gpu'], str) else json.dumps(e['gpu'])}", ""]
    cs = load("coldstart")
    if cs:
        lines += ["## 3. Cold start", machine_line(cs), "",
                  f"- `python app.py` to first HTTP 200: median **{cs['first_http_200_s']['median']} s** "
                  f"(all: {cs['first_http_200_s']['all']})",
                  f"- heavy modules loaded by the UI process: **{cs['heavy_modules_loaded'] or 'none'}**",
                  f"- import time: {cs['import_s']}", f"- target {cs['target']}: **{'met' if cs['met'] else 'missed'}**", ""]
    d = load("data")
    if d:
        lines += ["## 4. Data pipeline", machine_line(d), "", d["note"], "",
                  "| rows | format | rows/s | ratio to datasets.map baseline | peak RSS (MB) | memory ratio |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for n, per in d["per_size"].items():
            base = per["baseline_datasets_map"]
            lines.append(f"| {n} | baseline | {base['rows_per_s']} | 1.0 | {base['peak_rss_mb']} | 1.0 |")
            for fmt, r in per.items():
                if fmt != "baseline_datasets_map":
                    lines.append(f"| {n} | {fmt} | {r['rows_per_s']} | {r['rows_per_s_ratio']} | {r['peak_rss_mb']} "
                                 f"| {r['peak_memory_ratio']} |")
        big = d["stream_1gb"]
        if isinstance(big, dict):
            lines += ["", f"- {big['file_gb']} GB JSONL streamed: {big['rows']} rows at {big['rows_per_s']} rows/s; RSS "
                          f"{big['rss_start_mb']} MB at start, {big['rss_end_mb']} MB at end, samples "
                          f"{big['rss_samples_mb'][:10]}... flat: **{big['flat']}**"]
        lines.append("")
    ch = load("chat")
    if ch:
        lines += ["## 5. Chat", machine_line(ch), "",
                  f"- raw generate: TTFT {ch['raw_generate']['ttft_s']} s, {ch['raw_generate']['tokens_per_s']} tokens/s",
                  f"- ftspace stream: TTFT {ch['ours_stream']['ttft_s']} s, {ch['ours_stream']['tokens_per_s']} tokens/s",
                  f"- tokens/s ratio **{ch['tokens_per_s_ratio']}**, TTFT ratio (raw / ours) "
                  f"**{ch['ttft_ratio_raw_over_ours']}**; target {ch['target']}"]
        lines += [f"- {ch['note']}"] if ch.get("note") else []
        lines.append("")
    s = load("slicing")
    if s:
        lines += ["## 6. ZeroGPU slicing", machine_line(s), "", f"Setup: {s['setup']}", "",
                  "| slice | load + resume (s) | training (s) | overhead share |", "| --- | --- | --- | --- |"]
        lines += [f"| {r['slice']} | {r['load_s']} | {r['train_s']} | {r['overhead_share']} |" for r in s["slices"]]
        lines += ["", f"- overall overhead share: **{s['overhead_share_total']}**", f"- {s['note']}", ""]
    g = load("gpu")
    lines += ["## 7. GPU (bench/gpu_check.py)"]
    if g:
        lines += [machine_line(g), "", f"Device: **{g['device']}** ({g['memory']}); model {g['model']}, {g['steps']} "
                  f"steps at length {g['seq']}, {g['rounds']} interleaved rounds (min / median / max).", "",
                  "| training | backend | tokens/s | peak GPU memory (MB, max_memory_allocated) |", "| --- | --- | --- | --- |"]
        for name, r in g["train"].items():
            t, m = r["tokens_per_s"], r["peak_gpu_mb"]
            lines.append(f"| {name} | {r['backend']} | {t['min']} / {t['median']} / {t['max']} | "
                         f"{m['min']} / {m['median']} / {m['max']} |")
        c = g["chat_tokens_per_s"]
        lines += ["", f"- chat on {g['chat_device']} with the 16-bit run's adapter: {c['min']} / {c['median']} / "
                      f"{c['max']} tokens/s", f"- merge (base + adapter, 16-bit): {g['merge_s']} s", ""]
    else:
        lines += ["", "Not measured yet: no CUDA GPU has been available to this project. On a machine with one, "
                      "`.venv/bin/python bench/gpu_check.py` fills this section (and `pytest -m gpu` runs the GPU "
                      "tests).", ""]
    (ROOT / "bench" / "RESULTS.md").write_text("\n".join(lines))
    print("wrote bench/RESULTS.md")


if __name__ == "__main__":
    main()
