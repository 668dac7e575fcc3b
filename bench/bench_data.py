"""Benchmark 4: the data pipeline. Detect + convert + validate + tokenize (with response masks)
N synthetic rows per format, against a raw `datasets.map(apply_chat_template)` over rows already in
messages form; rows/s and peak RSS, each measured in its own child process. Then a 1 GB JSONL file
is streamed through detect + convert + validate and RSS is sampled: it must stay flat."""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import OUT, ratio, run_json, save  # noqa: E402

Q, A = "What is the boiling point of water at sea level, in degrees Celsius?", "It boils at 100 degrees Celsius."


def synthetic(fmt: str, i: int) -> dict:
    q, a = f"{Q} (#{i})", A
    return {
        "alpaca": {"instruction": q, "input": "", "output": a},
        "sharegpt": {"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]},
        "messages": {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]},
        "prompt_completion": {"prompt": q, "completion": a},
        "pairs": {"question": q, "answer": a},
        "text": {"text": f"{q} {a}"},
    }[fmt]


def write(fmt: str, n: int) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"data-{fmt}-{n}.jsonl"
    if not path.exists():
        with open(path, "w") as fh:
            for i in range(n):
                fh.write(json.dumps(synthetic(fmt, i)) + "\n")
    return path


def child(kind: str, fmt: str, n: int) -> dict:
    from transformers import AutoTokenizer

    from ftspace.data.tokenize import set_chat_template, tokenize_example
    from ftspace.models import ensure_default_model

    tokenizer = AutoTokenizer.from_pretrained(ensure_default_model(progress=lambda *_: None))
    set_chat_template(tokenizer)
    path = write(fmt, n)
    t0 = time.perf_counter()
    if kind == "ours":
        from ftspace.data import open_dataset

        _, stream = open_dataset(str(path))
        count = sum(1 for ex in stream if tokenize_example(tokenizer, ex)["input_ids"])
    else:
        import datasets

        datasets.disable_progress_bars()
        rows = [{"messages": synthetic("messages", i)["messages"]} for i in range(n)]
        ds = datasets.Dataset.from_list(rows).map(
            lambda r: {"input_ids": tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=False)})
        count = len(ds)
    seconds = time.perf_counter() - t0
    return {"rows": count, "seconds": round(seconds, 2), "rows_per_s": round(count / seconds, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def stream_big(gigabytes: float) -> dict:
    import psutil

    from ftspace.data import open_dataset

    path = OUT / "data-big.jsonl"
    filler = "x" * 900
    target = int(gigabytes * 2**30)
    if not path.exists() or path.stat().st_size < target:
        with open(path, "w") as fh:
            i = 0
            while fh.tell() < target:
                fh.write(json.dumps({"question": f"{Q} {i} {filler}", "answer": A}) + "\n")
                i += 1
    proc = psutil.Process()
    report, stream = open_dataset(str(path))
    start = proc.memory_info().rss
    samples, t0 = [], time.perf_counter()
    for n, _ in enumerate(stream, start=1):
        if n % 100_000 == 0:
            samples.append(round(proc.memory_info().rss / 2**20, 1))
    seconds = time.perf_counter() - t0
    end = proc.memory_info().rss
    return {"file_gb": round(path.stat().st_size / 2**30, 2), "rows": report.rows_kept,
            "rows_per_s": round(report.rows_kept / seconds, 1), "rss_start_mb": round(start / 2**20, 1),
            "rss_end_mb": round(end / 2**20, 1), "rss_samples_mb": samples,
            "flat": (max(samples or [0]) - start / 2**20) < 100}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--child", nargs=3, metavar=("KIND", "FORMAT", "ROWS"))
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--formats", default="alpaca,sharegpt,messages,prompt_completion,pairs,text")
    p.add_argument("--big-gb", type=float, default=1.0)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.child[0], a.child[1], int(a.child[2]))))
        return
    results = {}
    for n in map(int, a.sizes.split(",")):
        base = run_json(["bench/bench_data.py", "--child", "baseline", "messages", str(n)])
        results[str(n)] = {"baseline_datasets_map": base}
        for fmt in a.formats.split(","):
            ours = run_json(["bench/bench_data.py", "--child", "ours", fmt, str(n)])
            ours["rows_per_s_ratio"] = ratio(ours["rows_per_s"], base["rows_per_s"])
            ours["peak_memory_ratio"] = ratio(ours["peak_rss_mb"], base["peak_rss_mb"])
            results[str(n)][fmt] = ours
            print(n, fmt, ours, flush=True)
    big = stream_big(a.big_gb) if a.big_gb > 0 else "skipped"
    print("1 GB stream:", big)
    save("data", {"per_size": results, "stream_1gb": big,
                  "note": "ours = detect + convert + validate + tokenize with response masks (three chat-template "
                          "renders per single-turn row); the baseline renders once and computes no masks."})
    (OUT / "data-big.jsonl").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
