"""Benchmark 4: the data pipeline, and what the commands that read data cost on a 1 GB file.

(a) Throughput: detect + convert + validate + tokenize with response masks (ftspace.data.open_dataset then
tokenize_example, what inspection and preparation run per row), N synthetic rows per format, against a raw
`datasets.map(apply_chat_template)` over rows already in messages form; each in its own child process,
interleaved over --rounds; rows/s and the child's own peak RSS (VmHWM).
(b) The commands as users run them, each in a fresh process with its own peak memory read inside it
(bench/peak.py): `ftspace data inspect` without and with token statistics, and a run's preparation
(`ftspace.engine.prepare`, through ftspace.offload as the app runs it), on a small file and on a 1 GB file.
Memory that does not grow from the small file to the 1 GB one is what "streams" means here."""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import OUT, ROOT, ratio, run_json, save, spread, verdict  # noqa: E402

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
    from ftspace.memory import peak_rss_mb
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
            "peak_rss_mb": peak_rss_mb()}


def big_file(gigabytes: float) -> Path:
    path = OUT / f"data-big-{gigabytes:g}gb.jsonl"
    filler, target = "x" * 900, int(gigabytes * 2**30)
    if not path.exists() or path.stat().st_size < target:
        with open(path, "w") as fh:
            i = 0
            while fh.tell() < target:
                fh.write(json.dumps({"question": f"{Q} {i} {filler}", "answer": A}) + "\n")
                i += 1
    return path


def measured(args: list[str], stdin: str | None = None) -> dict:
    """A command in a fresh process: wall time and its own peak memory (bench/peak.py)."""
    with tempfile.TemporaryDirectory() as tmp:
        peak = Path(tmp) / "peak.json"
        t0 = time.time()
        out = subprocess.run([sys.executable, "bench/peak.py", str(peak), "-m", *args], cwd=ROOT, input=stdin,
                             capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if out.returncode != 0:
            raise RuntimeError(f"{args} failed:\n{out.stderr[-3000:]}")
        return {"seconds": round(time.time() - t0, 1), "peak_mb": json.loads(peak.read_text())["peak_mb"]}


def prepare(path: Path, max_len: int) -> tuple[dict, int]:
    """A run's preparation, as the app runs it (ftspace.offload): its measurement and the training rows."""
    from ftspace import runs
    from ftspace.config import RunConfig

    os.environ["FTSPACE_RUNS"] = tempfile.mkdtemp(prefix="ftspace-bench-data-")
    run = runs.create(RunConfig(dataset=str(path), max_seq_length=max_len, validation_size=0.01, max_steps=1))
    request = json.dumps({"fn": "ftspace.engine.prepare:prepare_in_place", "kwargs": {"run_dir": str(run.path)}})
    done = measured(["ftspace.offload"], stdin=request)
    return {**done, "measured": time.strftime("%Y-%m-%d %H:%M")}, \
        json.loads((run.path / "prepared" / "prepared.json").read_text())["train_rows"]


def commands(path: Path, max_len: int) -> dict:
    result = {"file_mb": round(path.stat().st_size / 2**20, 1),
              "inspect_no_tokens": measured(["ftspace", "data", "inspect", str(path), "--no-tokens"]),
              "inspect_with_tokens": measured(["ftspace", "data", "inspect", str(path), "--max-seq-length",
                                               str(max_len)])}
    result["prepare"], result["rows"] = prepare(path, max_len)
    return result


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--child", nargs=3, metavar=("KIND", "FORMAT", "ROWS"))
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--formats", default="alpaca,sharegpt,messages,prompt_completion,pairs,text")
    p.add_argument("--big-gb", type=float, default=1.0)
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--prepare-only", action="store_true",
                   help="measure the preparation again (small and big file) in the existing data.json")
    a = p.parse_args()
    if a.prepare_only:
        found = json.loads((OUT / "data.json").read_text())
        for key, path in (("small", write("pairs", a.rows)), ("big", big_file(a.big_gb))):
            found["commands"][key]["prepare"], _ = prepare(path, a.max_len)
            print(key, found["commands"][key]["prepare"], flush=True)
        (OUT / "data.json").write_text(json.dumps(found, indent=1))
        for path in OUT.glob("data-big-*.jsonl"):
            path.unlink()
        return
    if a.child:
        print(json.dumps(child(a.child[0], a.child[1], int(a.child[2]))))
        return
    formats = ["baseline"] + a.formats.split(",")
    samples = {fmt: [] for fmt in formats}
    for _ in range(a.rounds):  # interleaved: baseline, then every format, round after round
        for fmt in formats:
            args = ["baseline", "messages"] if fmt == "baseline" else ["ours", fmt]
            samples[fmt].append(run_json(["bench/bench_data.py", "--child", *args, str(a.rows)]))
            print(fmt, samples[fmt][-1], flush=True)
    throughput = {fmt: {"rows_per_s": spread(s["rows_per_s"] for s in v), "peak_mb": spread(s["peak_rss_mb"] for s in v)}
                  for fmt, v in samples.items()}
    base = throughput["baseline"]
    for fmt, t in throughput.items():
        t["rows_per_s_ratio"] = ratio(t["rows_per_s"]["median"], base["rows_per_s"]["median"])
        t["rows_per_s_vs_baseline"] = verdict(t["rows_per_s"], base["rows_per_s"])
        t["peak_memory_ratio"] = ratio(t["peak_mb"]["median"], base["peak_mb"]["median"])
    small = commands(write("pairs", a.rows), a.max_len)
    print("small file:", small, flush=True)
    big = commands(big_file(a.big_gb), a.max_len) if a.big_gb > 0 else "skipped"
    print("big file:", big, flush=True)
    save("data", {"setup": {"rows": a.rows, "rounds": a.rounds, "max_seq_length": a.max_len},
                  "throughput": throughput, "commands": {"small": small, "big": big},
                  "note": "ours = detect + convert + validate + tokenize with response masks (three chat-template "
                          "renders per single-turn row); the baseline renders once and computes no masks."})
    for path in OUT.glob("data-big-*.jsonl"):
        path.unlink()


if __name__ == "__main__":
    main()
