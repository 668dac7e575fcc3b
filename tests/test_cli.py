"""The CLI end to end: training, resuming, stopping and chatting from the command line; bad input exits with one line
(the demo, where the real default model learns the bundled fact, is in tests/test_learning.py).

Most commands run in this process (`clitools.cli`: `main(argv)`, output captured); `demo`, `train`, `estimate`,
`data inspect` and the installed command run as real processes (the entry point, and the library chatter kept off
the terminal)."""

import argparse
import json
import os
import subprocess
from pathlib import Path

import pytest

from clitools import cli, cli_process

ROOT = Path(__file__).resolve().parent.parent


def test_train_resume_stop_chat_on_tiny_model(runs_dir, tiny_model):
    result = cli_process("train", "--set", f"model_name={tiny_model}", "--set", "dataset=example:alpaca",
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
    """The data family's real process (tests/test_wild_data.py runs `data inspect` in-process on every file)."""
    result = cli_process("data", "inspect", "examples/tools.jsonl", "--json", "--max-seq-length", "128",
                         "--model-name", "default", "--dataset-format", "messages")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["format"] == "messages" and report["rows_kept"] == 9
    assert report["tokens"]["count"] == 9 and report["tokens"]["over_max_seq_length"] > 0
    assert report["preview"][0]["tools"][0]["function"]["name"] == "get_weather"


# LoRA on 7 projections x 30 layers of SmolLM2-135M: r * (in + out) summed, per unit of rank.
LORA_PER_RANK = 30 * ((576 + 576) + (576 + 192) * 2 + (576 + 576) + (576 + 1536) * 2 + (1536 + 576))


def test_estimate(default_model_path, runs_dir):
    result = cli("estimate", "--config", "examples/facts.yaml")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert 134_000_000 < out["parameters"] < 136_000_000
    assert out["trainable_parameters"] == 16 * LORA_PER_RANK
    # the 32 rows and, mixed in by the preset (mix_general_data 0.5), 16 general rows
    assert (out["steps"], out["rows"], out["train_rows"], out["rows_capped"]) == (30, 32, 48, False)
    # No run measured yet: a time all the same, from the catalogued CPU speed (234 tokens/s for this model on 2
    # cores), the rows' own length and the worker's start.
    import os

    from ftspace.planning import CATALOGUE_TOKENS_PER_S_1B, STARTUP_S

    assert out["time_source"] == "catalogued"
    from ftspace.models import cpu_computes_bf16

    per_core = CATALOGUE_TOKENS_PER_S_1B["cpu_per_core" if cpu_computes_bf16() else "cpu_per_core_float32"]
    assert out["tokens_per_s"] == round(per_core * os.cpu_count() / (out["parameters"] / 1e9))
    tokens_per_example = (out["seconds"] - STARTUP_S) * out["tokens_per_s"] / (30 * out["examples_per_step"])
    assert 20 < tokens_per_example < 60  # short question/answer rows through the template
    assert "on this hardware (a rough figure" in " ".join(result.stderr.split())
    longer = json.loads(cli("estimate", "--config", "examples/facts.yaml", "--max-steps", "60").stdout)
    assert longer["seconds"] - STARTUP_S == pytest.approx(2 * (out["seconds"] - STARTUP_S), rel=0.01)


def test_flags_come_from_the_schema_and_win(default_model_path):
    # A flag beats --set, which beats the YAML; the validation and test rows come out of the training rows
    # (32 - 4 - 2 = 26 of ours, and 13 general rows mixed in).
    result = cli_process("estimate", "--config", "examples/facts.yaml", "--set", "lora_r=8", "--lora-r", "32",
                         "--max-steps", "-1", "--num-train-epochs", "2", "--validation-size", "4", "--test-size", "2")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["trainable_parameters"] == 32 * LORA_PER_RANK
    assert (out["rows"], out["train_rows"], out["steps"]) == (32, 39, 10)  # ceil(39 * 2 / 8)
    # Nothing but our own line on stderr (a real process: the libraries' import chatter went to the library log).
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "39 training rows" in result.stderr


def test_a_preset_fills_what_the_file_leaves_and_flags_win(default_model_path, tmp_path):
    """--preset (train, estimate, sweep): the app's preset for every field the --config file does not write;
    the file's own fields, then --set, then flags win over it. Unknown names are refused by argparse."""
    only_data = tmp_path / "data.yaml"
    only_data.write_text("model_name: default\ndataset: example:facts\n")
    out = json.loads(cli("estimate", "--config", str(only_data), "--preset", "thorough").stdout)
    assert out["trainable_parameters"] == 64 * LORA_PER_RANK  # thorough: lora_r 64
    out = json.loads(cli("estimate", "--config", "examples/facts.yaml", "--preset", "thorough").stdout)
    assert out["trainable_parameters"] == 16 * LORA_PER_RANK and out["steps"] == 30  # the file writes lora_r, steps
    out = json.loads(cli("estimate", "--config", str(only_data), "--preset", "thorough", "--set", "lora_r=8",
                         "--lora-r", "4").stdout)
    assert out["trainable_parameters"] == 4 * LORA_PER_RANK
    refused = cli("estimate", "--config", str(only_data), "--preset", "fastest")
    assert refused.returncode == 2 and "invalid choice: 'fastest'" in refused.stderr
    for command in ("train", "estimate", "sweep"):
        assert "'quick demo','balanced','thorough'" in cli(command, "--help").stdout


def test_app_command_serves_what_app_py_serves(monkeypatch):
    """`ftspace app --host/--port/--mcp` sets what `python app.py` reads and serves the same app (served for
    real by tests/test_load.py, which starts it this way)."""
    import ftspace.ui

    served = []
    monkeypatch.setattr(ftspace.ui, "serve", lambda demo=None: served.append(dict(os.environ)))
    for name in ("GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT", "FTSPACE_MCP"):
        monkeypatch.setenv(name, "")  # restored (or removed again) after the test, whatever the command sets
        monkeypatch.delenv(name)
    assert cli("app", "--host", "127.0.0.1", "--port", "7999", "--mcp").returncode == 0
    assert [(e["GRADIO_SERVER_NAME"], e["GRADIO_SERVER_PORT"], e["FTSPACE_MCP"]) for e in served] == [
        ("127.0.0.1", "7999", "1")]
    assert "ftspace app" in cli("--help").stdout and "examples:" in cli("app", "--help").stdout


def test_help_lists_every_field():
    from dataclasses import fields

    from ftspace.config import GenerationSettings, RunConfig

    text = cli("train", "--help").stdout
    for f in fields(RunConfig):
        assert f"--{f.name.replace('_', '-')}" in text, f.name
    assert "LoRA rank: adapter capacity" in " ".join(text.split())  # the field's own help
    assert "{linear,cosine,constant,constant_with_warmup}" in text  # its choices
    assert "--no-packing" in text  # booleans both ways
    from ftspace.rewards import BUILTIN

    assert "rewards (method grpo;" in text and all(f"\n  {name}: " in text for name in BUILTIN)  # what each scores
    chat = " ".join(cli("chat", "--help").stdout.split())
    for f in fields(GenerationSettings):
        assert f"--{f.name.replace('_', '-')}" in chat, f.name
    assert "Longest reply, in tokens. (default: 256)" in chat  # the one default, as chat uses it
    inspect = cli("data", "inspect", "--help").stdout
    assert all(flag in inspect for flag in ("--dataset-format", "--prompt-column", "--model-name", "--max-seq-length"))
    from ftspace.data.create.settings import RAFT_FIELDS, SYNTH_FIELDS

    data = cli("data", "--help").stdout  # the family's own help: its commands, with examples of each
    assert "examples:" in data and all(f"ftspace data {command} " in data for command in ("inspect", "synth", "raft"))
    for command, names in (("synth", SYNTH_FIELDS), ("raft", RAFT_FIELDS)):
        text = cli("data", command, "--help").stdout
        assert all(f"--{name.replace('_', '-')}" in text for name in names) and "examples:" in text
    for command in ("train", "resume", "stop", "runs", "status", "chat", "push", "estimate", "eval", "sweep", "demo",
                    "app"):
        text = cli(command, "--help").stdout
        assert "examples:" in text and f"ftspace {command}" in text and "exit codes:" in text, command
        assert "(default: )" not in " ".join(text.split()), command  # an empty default says "none"
    from ftspace.__main__ import build_parser

    def parsers(parser, name="ftspace"):
        yield name, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    yield from parsers(sub, f"{name} {sub_name}")
    unexplained = [f"{name} {'/'.join(a.option_strings) or a.dest}" for name, parser in parsers(build_parser())
                   for a in parser._actions if not a.help and not isinstance(a, argparse._SubParsersAction)]
    assert unexplained == [], unexplained
    train = cli("train", "--help").stdout
    assert "checkpoints and logging options:" in train and "--train-on hf_jobs" in train


@pytest.mark.parametrize("args, message", [
    (["train", "--config", "nope.yaml"], "nope.yaml: config file not found"),
    (["train", "--set", "lora_r=0"], "lora_r = 0 is out of range"),
    (["train", "--set", "dataset=missing.jsonl"], "missing.jsonl: file not found"),
    (["train", "--set", "lora_rnk=4"], "Did you mean 'lora_r'"),
    (["train", "--lora-r", "0"], "lora_r = 0 is out of range"),
    (["train", "--lr-scheduler-type", "steep"], "lr_scheduler_type = 'steep' is not one of"),
    (["data", "inspect", "examples/facts.jsonl", "--dataset-format", "columns"], "needs prompt_column"),
    (["chat", "x", "--prompt", "hi", "--temperature", "9"], "temperature = 9.0 is out of range"),
    (["data", "inspect", "tests/conftest.py"], "conftest.py: unsupported file type"),
    (["chat", "no-such-run", "--prompt", "x"], "No run 'no-such-run'"),
    (["stop", "../../etc", ], "not a run id"),
    (["data", "synth", "--seeds", "examples/facts.jsonl", "--teacher", "openai"], "teacher_url: give the OpenAI"),
    (["data", "raft", "examples", "--chunk-overlap", "300"], "chunk_overlap = 300 must be smaller than chunk_tokens"),
    (["data", "raft", "tests/conftest.py"], "conftest.py: not a document ftspace reads"),
])
def test_bad_input_exits_nonzero_with_one_line(args, message, runs_dir):
    result = cli(*args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {result.stderr.strip()[7:]}"]
    assert message in result.stderr
    assert result.stdout == ""


def test_installed_command_runs_from_any_folder(tmp_path, tiny_model):
    """`make setup` installs `ftspace` (pyproject's entry point) into .venv: from another folder, with no
    PYTHONPATH and no FTSPACE_RUNS, a run lands in that folder's ./runs, and runs/status find it as JSON."""
    import os

    command = ROOT / ".venv" / "bin" / "ftspace"
    assert command.exists(), "no .venv/bin/ftspace: `make setup` installs the project in editable mode"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FTSPACE_RUNS")}
    work = tmp_path / "elsewhere"
    work.mkdir()

    def ftspace(*args):
        return subprocess.run([str(command), *args], capture_output=True, text=True, cwd=work, env=env,
                              timeout=280, stdin=subprocess.DEVNULL)

    result = ftspace("train", "--model", str(tiny_model), "--dataset", "example:alpaca", "--max-steps", "2",
                     "--max-seq-length", "128", "--no-gradient-checkpointing", "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    assert run_dir.parent == work / "runs" and (run_dir / "adapter" / "adapter_config.json").exists()

    [entry] = json.loads(ftspace("runs", "--json").stdout)
    assert entry["id"] == run_dir.name and entry["status"] == "completed" and entry["step"] == 2
    status = ftspace("status", run_dir.name, "--json")
    info = json.loads(status.stdout)
    assert status.returncode == 0 and info["status"] == "completed" and info["total_steps"] == 2
    assert info["adapter"] == str(run_dir / "adapter") and info["path"] == str(run_dir)
    assert "owner" not in info
    text = ftspace("status", run_dir.name).stdout
    assert f"{run_dir.name}: completed, step 2/2" in text

    missing = ftspace("status", "no-such-run", "--json")
    assert missing.returncode == 2 and missing.stderr.strip() == \
        f"error: No run 'no-such-run' in {work / 'runs'}: see `ftspace runs`."
    help_text = ftspace("--help").stdout
    assert "exit codes:" in help_text and "130" in help_text and "ftspace status RUN --json" in help_text
