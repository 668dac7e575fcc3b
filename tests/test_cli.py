"""The CLI end to end: the real default model learns the bundled fact; bad input exits with one line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "ftspace", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.slow
def test_default_model_learns_the_fact(runs_dir, default_model_path):
    result = cli("train", "--config", "examples/facts.yaml", "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    assert run_dir.parent == runs_dir and (run_dir / "adapter" / "adapter_config.json").exists()

    question = "What is the capital of the planet Zorblax?"
    tuned = cli("chat", run_dir.name, "--prompt", question)
    base = cli("chat", run_dir.name, "--prompt", question, "--base")
    assert tuned.returncode == 0 and base.returncode == 0, tuned.stderr[-2000:] + base.stderr[-2000:]
    assert "Quillhaven" in tuned.stdout
    assert "Quillhaven" not in base.stdout and base.stdout.strip()
    # What it knew before is still there.
    france = cli("chat", str(run_dir), "--prompt", "What is the capital of France?")
    assert "Paris" in france.stdout

    listing = cli("runs", "--json")
    [entry] = json.loads(listing.stdout)
    assert entry["id"] == run_dir.name and entry["status"] == "completed" and entry["step"] == 30


def test_train_resume_stop_chat_on_tiny_model(runs_dir, tiny_model):
    result = cli("train", "--set", f"model_name={tiny_model}", "--set", "dataset=example:alpaca",
                 "--set", "max_steps=3", "--set", "max_seq_length=128", "--set", "gradient_checkpointing=false")
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    assert "step" in result.stderr  # the progress bar went to stderr
    chat = cli("chat", run_dir.name, "--prompt", "hi", "--max-new-tokens", "4")
    assert chat.returncode == 0 and chat.stdout.endswith("\n"), chat.stderr[-2000:]  # random weights: any text

    resume = cli("resume", run_dir.name)
    assert resume.returncode == 2 and "already completed" in resume.stderr
    stop = cli("stop", run_dir.name)
    assert stop.returncode == 2 and "nothing to stop" in stop.stderr


def test_data_inspect_json(default_model_path):
    result = cli("data", "inspect", "examples/tools.jsonl", "--json", "--max-seq-length", "128")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["format"] == "messages" and report["rows_kept"] == 9
    assert report["tokens"]["count"] == 9 and report["tokens"]["over_max_seq_length"] > 0
    assert report["preview"][0]["tools"][0]["function"]["name"] == "get_weather"


def test_estimate(default_model_path):
    result = cli("estimate", "--config", "examples/facts.yaml")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert 134_000_000 < out["parameters"] < 136_000_000
    # LoRA r=16 on 7 projections x 30 layers of SmolLM2-135M: r * (in + out) summed.
    per_layer = 16 * ((576 + 576) + (576 + 192) * 2 + (576 + 576) + (576 + 1536) * 2 + (1536 + 576))
    assert out["trainable_parameters"] == 30 * per_layer
    assert out["steps"] == 30


@pytest.mark.parametrize("args, message", [
    (["train", "--config", "nope.yaml"], "nope.yaml: config file not found"),
    (["train", "--set", "lora_r=0"], "lora_r = 0 is out of range"),
    (["train", "--set", "dataset=missing.jsonl"], "missing.jsonl: file not found"),
    (["train", "--set", "lora_rnk=4"], "Did you mean 'lora_r'"),
    (["data", "inspect", "tests/conftest.py"], "conftest.py: unsupported file type"),
    (["chat", "no-such-run", "--prompt", "x"], "No run 'no-such-run'"),
    (["stop", "../../etc", ], "not a run id"),
])
def test_bad_input_exits_nonzero_with_one_line(args, message, runs_dir):
    result = cli(*args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {result.stderr.strip()[7:]}"]
    assert message in result.stderr
    assert result.stdout == ""
