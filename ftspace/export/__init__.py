"""A run exported to run anywhere: one GGUF file (llama.cpp, Ollama, LM Studio) with the run's own chat template,
its special and end-of-turn tokens and its sampling defaults, an Ollama Modelfile with --ollama, and proof that
the file behaves like the run (ftspace/export/parity.py) before the export is called done.

    export.gguf(run, "q8_0", ollama=True)  ->  the report (also export.json in the folder):
    runs/RUN/exports/q8_0/RUN-Q8_0.gguf, Modelfile, README.md (how to run it), export.json

The merge: the base loaded unquantized in float32 (a QLoRA run's too), the adapter added, then each tensor
written in the chosen type: never merged into 4-bit weights. k-quants (q4_k_m and kin) are made from the f16 file
by llama.cpp's quantizer where it is installed (`llama-quantize`, or llama-cpp-python's binding of the same
function; the gguf package has no k-quant writer).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ftspace.errors import FtspaceError
from ftspace.export.writer import K_QUANTS, QUANTS, ExportError, architecture, tokenizer_kind
from ftspace.runs import Run

__all__ = ["ExportError", "QUANTS", "K_QUANTS", "check", "gguf", "quantizer"]

PARITY_PROMPTS = 4  # prompts compared (each: a greedy answer by both models, and the logits along it)
PARITY_TOKENS = 24  # longest greedy answer compared, in tokens


def quantizer() -> str | None:
    """llama.cpp's quantizer on this machine: its `llama-quantize` ($FTSPACE_LLAMA_QUANTIZE, else on PATH), else
    "llama-cpp-python" (the same C function, `llama_model_quantize`), else None."""
    import importlib.util

    found = os.environ.get("FTSPACE_LLAMA_QUANTIZE")
    if found is not None:
        return found or None  # set empty: none, whatever is installed
    return shutil.which("llama-quantize") or ("llama-cpp-python" if importlib.util.find_spec("llama_cpp") else None)


def check(run: Run, quant: str, token: str | None = None) -> str:
    """Everything that can be refused before any work, each in one line; returns llama.cpp's architecture."""
    from ftspace.chat import adapter_base
    from ftspace.models import resolve_model

    if quant not in QUANTS + K_QUANTS:
        raise ExportError(f"Unknown GGUF type {quant!r}: choose one of {', '.join(QUANTS + K_QUANTS)}.")
    if quant in K_QUANTS and not quantizer():
        raise ExportError(f"{quant} needs llama.cpp's quantizer, not found on this machine: install llama-cpp-python "
                          "(docs/gguf.md) or llama.cpp's llama-quantize (on PATH, or "
                          f"FTSPACE_LLAMA_QUANTIZE=/path/to/it), or choose {', '.join(QUANTS)}.")
    if not (run.adapter_dir / "adapter_config.json").exists():
        raise ExportError(f"Run {run.id} has no adapter yet ({run.status()['status']}): wait for it to finish, or "
                          "export another run.")
    base = adapter_base(run.adapter_dir)  # a local folder, or a Hub id: its config.json only, with your token
    folder = base if Path(base).is_dir() else resolve_model(base, progress=lambda *_: None, token=token, need="config")
    config = json.loads((Path(folder) / "config.json").read_text())
    arch = architecture(config.get("architectures") or [config.get("model_type", "?")])
    tokenizer_kind(run.adapter_dir)
    return arch


def gguf(run: Run, quant: str, *, ollama: bool = False, out_dir: Path | None = None, token: str | None = None,
         progress=lambda done, total, what: None) -> dict:
    """Export `run` as one GGUF file of type `quant` (and a Modelfile), checked against the run; the report.

    ExportError (one line) for what cannot be exported or does not behave like the run; the folder is then left
    as it was (nothing half-written)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftspace.config import GenerationSettings
    from ftspace.evaluation import base_for
    from ftspace.export import ollama as ollama_, parity

    arch = check(run, quant, token)
    out_dir = Path(out_dir) if out_dir else run.path / "exports" / quant
    name = f"{run.id}-{quant.upper()}.gguf"
    defaults = GenerationSettings()
    sampling = {"temperature": defaults.temperature, "top_p": defaults.top_p}
    tokenizer = AutoTokenizer.from_pretrained(run.adapter_dir)  # the run's own: its chat template, its tokens
    if not tokenizer.chat_template:
        raise ExportError(f"Run {run.id} has no chat template to export with it: train it again with a chat template "
                          "(the app adds one to a base model).")
    steps = 5
    progress(0, steps, "loading the base model and the adapter")
    base = AutoModelForCausalLM.from_pretrained(base_for(run.adapter_dir, token), dtype=torch.float32)
    if getattr(base.config, "quantization_config", None):
        raise ExportError(f"The base model of run {run.id} is stored quantized, so it cannot be merged in 16-bit: "
                          "train on its unquantized release (load_in_4bit quantizes it on the fly).")
    model = PeftModel.from_pretrained(base, str(run.adapter_dir)).eval()
    prompts, replies = _prompts(run, token)
    progress(1, steps, "the run's answers")
    expected = parity.reference(model, tokenizer, prompts, replies, PARITY_TOKENS)
    model = model.merge_and_unload()
    stop_ids = model.generation_config.eos_token_id
    stop_ids = stop_ids if isinstance(stop_ids, list) else [stop_ids] if stop_ids is not None else []

    progress(2, steps, f"writing {name}")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the folder and moved in only once checked: a failed export (a full disk, a file that does not
    # behave like the run) leaves the folder as it was, a previous export of the same type included.
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        path = stage / name
        _write(model, tokenizer, run.adapter_dir, path, quant, name, sampling)
        del model
        template = _modelfile(tokenizer, stage, name, sampling, ollama_) if ollama else None
        progress(3, steps, "reading it back and comparing with the run")
        kind = quant if quant in QUANTS else "k"
        checks = [parity.compare(parity.load_gguf(path, arch), tokenizer, expected, kind, PARITY_TOKENS)]
        if (by_llama := parity.compare_llama_cpp(path, tokenizer, expected, kind, PARITY_TOKENS, stop_ids)) is not None:
            checks.append(by_llama)
        found = [f for figures in checks for f in parity.failures(figures)]
        if found:
            raise ExportError(f"The {quant} export does not behave like run {run.id}: {'; '.join(found)}. Nothing was "
                              "kept.")
        progress(4, steps, "writing the report")
        report = {"run": run.id, "type": quant, "file": name, "bytes": path.stat().st_size, "folder": str(out_dir),
                  "architecture": arch, "parity": checks, "files": [name] + (["Modelfile"] if ollama else []),
                  **({"ollama": template} if template else {})}
        (stage / "README.md").write_text(usage(report, ollama), encoding="utf-8")
        (stage / "export.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
        out_dir.mkdir(exist_ok=True)
        for item in stage.iterdir():
            os.replace(item, out_dir / item.name)
        progress(steps, steps, "done")
        return report
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _write(model, tokenizer, tokenizer_dir: Path, path: Path, quant: str, name: str, sampling: dict) -> None:
    from ftspace.export.writer import write_gguf

    template = tokenizer.chat_template
    if quant in QUANTS:
        write_gguf(model, tokenizer, Path(tokenizer_dir), path, quant, template, name=name, sampling=sampling)
        return
    f16 = write_gguf(model, tokenizer, Path(tokenizer_dir), path.with_name("f16.gguf"), "f16", template, name=name,
                     sampling=sampling)  # then llama.cpp's quantizer makes the k-quant from it
    try:
        tool = quantizer()
        if tool == "llama-cpp-python":
            import ctypes

            import llama_cpp

            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant.upper()}")
            params.nthread = os.cpu_count() or 1
            code = llama_cpp.llama_model_quantize(str(f16).encode(), str(path).encode(), ctypes.byref(params))
            tail = [f"exit code {code}"]
        else:
            done = subprocess.run([tool, str(f16), str(path), quant.upper()], capture_output=True, text=True)
            code, tail = done.returncode, (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        if code != 0:
            raise ExportError(f"llama.cpp's quantizer failed making {quant} ({tail[0][:200]}): try q8_0.")
    finally:
        f16.unlink(missing_ok=True)


def _modelfile(tokenizer, out_dir: Path, name: str, sampling: dict, ollama_) -> dict:
    """Write the Modelfile after checking its TEMPLATE against the chat template; what was checked."""
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = ollama_.pieces(tokenizer)
    runtime_bos = tokenizer.bos_token if tokenizer.bos_token_id is not None and probe[:1] == [
        tokenizer.bos_token_id] and plain["system_before"].startswith(tokenizer.bos_token or "\0") else ""
    derived = ollama_.derive(tokenizer, runtime_bos, plain)
    eos = tokenizer.eos_token_id
    eos_ids = eos if isinstance(eos, list) else [eos] if eos is not None else []
    stop = ollama_.stops(tokenizer, derived["pieces"], eos_ids)
    (out_dir / "Modelfile").write_text(ollama_.modelfile(name, derived["template"], stop, sampling), encoding="utf-8")
    return {"conversations": derived["checked"], "tools": derived["tools"], "stops": stop}


def _prompts(run: Run, token: str | None) -> tuple[list[list[dict]], list[str]]:
    """The prompts parity is measured on, with their reference replies: the run's test rows; without them, two of
    its training rows (what it learned must survive the export) and two of the general probe's questions."""
    from ftspace.engine.prepare import prepared_dir
    from ftspace.evaluation import EvalOptions, read_probe, target, test_rows

    try:
        rows, _ = test_rows(run, EvalOptions(), token)
    except FtspaceError:
        train = prepared_dir(run) / "train.jsonl"
        with open(train, encoding="utf-8") if train.exists() else contextlib.nullcontext([]) as fh:
            rows = [json.loads(line) for _, line in zip(range(PARITY_PROMPTS // 2), fh)]
        rows += [{"messages": [{"role": "user", "content": q["question"]}]} for q in read_probe()]
    pairs = [t if (t := target(row)) else ({"messages": row["messages"]}, {"text": ""}) for row in rows]
    pairs = pairs[:PARITY_PROMPTS]
    return [p["messages"] for p, _ in pairs], [r.get("text", "") for _, r in pairs]


def find_gguf(run: Run, quant: str = "") -> Path:
    """The run's GGUF export of type `quant` (empty: the one there is, q8_0 first), or the one line saying how to
    make it."""
    order = [quant] if quant else ["q8_0", *[q for q in QUANTS + K_QUANTS if q != "q8_0"]]
    for q in order:
        found = sorted((run.path / "exports" / q).glob("*.gguf"))
        if found:
            return found[0]
    raise ExportError(f"Run {run.id} has no {quant + ' ' if quant else ''}GGUF export: make one with `ftspace export "
                      f"{run.id} --gguf {quant or 'q8_0'}` (or the Publish tab's Export GGUF).")


def gguf_into(run_dir: str, quant: str, out_dir: str | None = None, token: str | None = None,
              ollama: bool = True) -> dict:
    """`gguf` by paths (JSON in and out, for ftspace.offload: on ZeroGPU the app process never imports
    transformers)."""
    return gguf(Run(Path(run_dir)), quant, ollama=ollama, out_dir=Path(out_dir) if out_dir else None, token=token)


def parity_lines(checks: list[dict], ollama: dict | None = None) -> list[str]:
    """The parity figures in words, one line per reader (the report, the CLI, the model card); with `ollama`
    (the report's), what the Modelfile's TEMPLATE was checked on."""
    lines = []
    for p in checks:
        tokens = (f"the same prompt tokens on {p['same_prompt_tokens']} of {p['prompts']} prompts; "
                  if "same_prompt_tokens" in p else "")
        hesitant = (f" ({len(p['hesitant_changes'])} differ where the run itself hesitated)"
                    if p["hesitant_changes"] else "")
        lines.append(f"{p['reader']}: {tokens}{p['same_greedy_answers']} of {p['prompts']} greedy answers identical"
                     f"{hesitant}; next-token KL divergence {p['mean_kl']:.2e} nats/token (max {p['max_kl']:.2e}; "
                     f"limit {p['kl_max']}); top token the same {100 * p['same_top_token']:.1f}% of the time; "
                     f"perplexity ratio {p['perplexity_ratio']:.4f}.")
    if ollama:
        tools = not ollama["tools"].startswith(("none", "not"))  # "none in the chat template", "not written (...)"
        lines.append(f"Ollama TEMPLATE: renders the prompt the chat template renders, to the character, on "
                     f"{ollama['conversations']} conversations (system prompt, several turns"
                     + (", tools" if tools else "") + f"); tools: {ollama['tools']}"
                     + (" (their JSON as Ollama writes it: compact)" if tools else "") + ".")
    return lines


def usage(report: dict, ollama: bool) -> str:
    """How to run the export: Ollama, llama.cpp, LM Studio (the folder's README.md and the model card)."""
    name = report["file"]
    lines = [f"# {name}", "", f"GGUF export ({report['type']}) of ftspace run {report['run']} "
             f"({report['architecture']} architecture), with the run's chat template and stop tokens.", "",
             "## Checked against the run", "", "Read back and compared with the tuned model on the same prompts:", ""]
    lines += [f"- {line}" for line in parity_lines(report["parity"], report.get("ollama"))] + ["", "## Run it", ""]
    if ollama:
        lines += ["Ollama (the Modelfile is in this folder):", "", "```", "ollama create my-model -f Modelfile",
                  "ollama run my-model", "```", ""]
    lines += ["llama.cpp (the chat template is inside the file):", "", "```", f"llama-cli -m {name} -cnv --jinja",
              f"llama-server -m {name} --jinja   # an OpenAI-compatible server on :8080", "```", "",
              f"LM Studio: `lms import {name}`, then load it in the app.", "",
              "From the Hub, once pushed: `ollama run hf.co/USER/REPO:" + report["type"].upper() + "`.", ""]
    return "\n".join(lines)
