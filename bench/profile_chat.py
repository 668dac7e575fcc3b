"""Where our chat's time goes: py-spy samples a child that generates with ftspace's chat model (the bundled model,
the run's adapter on), and the samples inside generate() are sorted into parts of the model.

    .venv/bin/python bench/profile_chat.py [--tokens 64]     (py-spy: pip install py-spy)

Used by bench_cpu_precision.py to say what dominates the gap to llama.cpp.
"""

import argparse
import collections
import json
import linecache
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = """
import sys, torch
from bench.bench_chat import make_adapter
from ftspace.chat import ChatModel
from ftspace.models import resolve_model
base = resolve_model("default")
chat = ChatModel.from_adapter(make_adapter(base), base=base)
inputs = chat._inputs([{"role": "user", "content": "Write three sentences about the sea."}])
def generate(n):
    with torch.inference_mode():
        chat.model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=2)
generate(4)
for _ in range(3):
    generate(int(sys.argv[1]))
"""
FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>.+?):(?P<line>\d+)\)$")

PARTS = {  # part -> what it is, as the report says it
    "base weights": "the model's own linear layers (matrix-vector products over the float32 weights)",
    "adapter (unmerged LoRA)": "LoRA's two small matmuls per projection and PEFT's Python around them",
    "lm_head": "the output layer over the 49k-token vocabulary, and the logits",
    "attention": "scaled dot-product attention over the KV cache",
    "norms, rotary, activations": "RMSNorm, rotary embeddings, SiLU, residual adds: small element-wise ops",
    "generation loop": "generate()'s own loop: logits processors, stopping checks, cache bookkeeping",
}


def locate(file: str) -> str | None:
    """py-spy names files relative to their site-packages (or absolute): the real path, to read the line."""
    if os.path.isabs(file):
        return file
    for entry in sys.path:
        candidate = Path(entry) / file
        if candidate.exists():
            return str(candidate)
    return None


def part_of(frames: list[dict]) -> str | None:
    funcs = [f["func"] for f in frames]
    if not any(f.endswith("generate") for f in funcs):
        return None
    for f in frames:
        if "peft/tuners/lora/layer.py" in f["file"] and f["func"] == "Linear.forward":
            path = locate(f["file"])
            source = linecache.getline(path, f["line"]) if path else ""
            return "base weights" if "base_layer(" in source else "adapter (unmerged LoRA)"
    if any("sdpa_attention_forward" in f or "eager_attention_forward" in f for f in funcs):
        return "attention"
    if any(f.endswith("Model.forward") and "ForCausalLM" not in f for f in funcs):
        if any(f == "Linear.forward" for f in funcs):  # an unadapted projection
            return "base weights"
        return "norms, rotary, activations"
    if any("ForCausalLM.forward" in f for f in funcs):
        return "lm_head"
    return "generation loop"


def profile(tokens: int = 64, rate: int = 200) -> dict | str:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return "skipped: py-spy is not installed (pip install py-spy)"
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "chat.txt"
        out = subprocess.run([spy, "record", "-f", "raw", "-r", str(rate), "-o", str(raw), "--",
                              sys.executable, "-c", CHILD, str(tokens)],
                             cwd=ROOT, capture_output=True, text=True, timeout=1800,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        if out.returncode != 0 or not raw.exists():
            return f"skipped: py-spy failed ({(out.stderr or out.stdout).strip().splitlines()[-1:]})"
        counts, python_plumbing, total = collections.Counter(), 0, 0
        for line in raw.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            frames = [m.groupdict() for m in map(FRAME.match, stack.split(";")) if m]
            for f in frames:
                f["line"] = int(f["line"])
            part = part_of(frames)
            if part is None:
                continue
            counts[part] += int(n)
            total += int(n)
            if frames[-1]["func"] in ("Module._call_impl", "Module._wrapped_call_impl", "Module.__getattr__"):
                python_plumbing += int(n)
    shares = {part: round(counts[part] / total, 3) for part in PARTS}
    return {"samples_in_generate": total, "shares": shares,
            "python_module_plumbing": round(python_plumbing / total, 3),
            "parts": PARTS, "tokens": tokens, "rate_hz": rate}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=int, default=64)
    print(json.dumps(profile(p.parse_args().tokens), indent=1))


if __name__ == "__main__":
    main()
