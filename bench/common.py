"""Shared helpers for the benchmarks: where results go, what machine this is, how to run a child."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"


# The CPU flags a figure depends on: bfloat16 units decide the precision (and a 16x speed gap), the vector
# width the rest.
FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "bf16", "neon", "sve")


def git(*args) -> tuple[int, str]:
    """(exit code, stripped stdout) of `git ARGS` in the checkout."""
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return out.returncode, out.stdout.strip()


def commit() -> dict:
    """The checkout a figure came from: its commit and whether the tree held uncommitted changes (other than the
    benchmarks' own results, which a run of several benchmarks rewrites as it goes)."""
    head = git("rev-parse", "HEAD")[1]
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/out", ":!bench/RESULTS.md")[1]
    return {"commit": head or "unknown", "dirty": bool(changed)}


def cpu() -> dict:
    """The CPU's model name and the flags of interest (Linux /proc/cpuinfo; empty where unreadable)."""
    from ftspace.models import cpu_flags, cpu_name

    return {"model": cpu_name(), "flags": sorted(set(FLAGS_OF_INTEREST) & cpu_flags())}


def machine() -> dict:
    from ftspace.models import hardware

    hw = hardware()
    return {"hardware": hw, "cpu": cpu(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M"), **commit()}


def has_cuda() -> bool:
    from ftspace.models import hardware

    return hardware()["kind"] == "cuda"


def save(name: str, result: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **result}, indent=1))
    print(f"wrote {path}")
    return path


def ftspace_cli(*args, env: dict) -> str:
    """The `ftspace` command in a process of its own (as a user runs it), its stdout; its stderr's end on failure."""
    out = subprocess.run([sys.executable, "-m", "ftspace", *args], cwd=ROOT, capture_output=True, text=True,
                         env=env, timeout=1800, stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return out.stdout


def run_json(args: list[str], env: dict | None = None, timeout: int = 1800) -> dict:
    """Run a child Python script that prints one JSON object as its last stdout line."""
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    if out.returncode != 0:
        raise RuntimeError(f"{args[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def spread(values) -> dict:
    """min / median / max of a contender's rounds (the report calls a difference only beyond the spread)."""
    import statistics

    values = [float(v) for v in values]
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3),
            "max": round(max(values), 3), "n": len(values)}


def verdict(ours: dict, theirs: dict) -> str:
    """'higher' / 'lower' only when the two spreads (from `spread`) do not overlap; else 'same within the spread'."""
    if ours["min"] > theirs["max"]:
        return "higher"
    if ours["max"] < theirs["min"]:
        return "lower"
    return "same within the spread"
