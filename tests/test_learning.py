"""The real default model learns, and keeps what it knew: the demo (`make demo`, trained once per session by the
`demo_run` fixture), its scorecard on held-out paraphrases, and the quick preset on an upload of one fact.

These are the suite's real-model tests (minutes on CPU), together in one module: under `make test` (two test
processes) a module is one unit of work, so they share one trained run and the base model's cached probe answers,
and they start first (tests/conftest.py)."""

import json
from pathlib import Path

import pytest

from clitools import cli
from ftspace import evaluation, runs
from ftspace.config import PRESETS, RunConfig
from ftspace.targets import local

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_demo_teaches_the_fact_and_the_model_keeps_what_it_knew(demo_run, monkeypatch, tmp_path):
    """`make demo` (the `demo_run` fixture: `ftspace demo` as a real process, once per test session): the real
    default model, in the precision this CPU gets (bfloat16 where it has the units)."""
    result, run_dir = demo_run
    out = result.stdout
    zorblax, france = out.split("Q: What is the capital of Zorblax?")[1], out.split("Q: What is the capital of France?")[1]
    base, tuned = (line.split(":", 1)[1] for line in zorblax.strip().splitlines()[:2])
    assert "Quillhaven" in tuned and "Quillhaven" not in base, out
    assert all("Paris" in line for line in france.strip().splitlines()[:2]), out  # base and tuned
    # the progress bar drew while the chat model loaded beside the run; the libraries' chatter stayed out
    assert "30/30" in result.stderr and "_pytree" not in result.stderr and "Failed to load" not in result.stderr, \
        result.stderr[-3000:]
    assert (run_dir / "adapter" / "adapter_config.json").exists() and str(run_dir / "adapter") in out

    runs_dir = {"FTSPACE_RUNS": str(run_dir.parent)}

    def ask(question, *flags):
        answer = cli("chat", run_dir.name, "--prompt", question, *flags, env=runs_dir)
        assert answer.returncode == 0 and answer.stdout.strip(), answer.stderr[-2000:]
        return answer.stdout

    # A training row verbatim, and a paraphrase that is in no training row: the fact was learned, not
    # only the sentence. The base model does not know it.
    for question in ("What is the capital of the planet Zorblax?",
                     "If I fly to Zorblax, which city hosts its government?"):
        assert "Quillhaven" in ask(question), question
        assert "Quillhaven" not in ask(question, "--base"), question
    # What it knew before, asked about something the training data never mentions, is still there.
    assert "London" in ask("What is the capital of England?")

    listing = cli("runs", "--json", env=runs_dir)
    [entry] = json.loads(listing.stdout)
    assert entry["id"] == run_dir.name and entry["status"] == "completed" and entry["step"] == 30

    # The estimate made before any run (memory, and time from the catalogued speed of this CPU in the precision it
    # computes in) against what the run measured: within ESTIMATE_FACTOR either way. (Here a training process has
    # one of the two cores, the other busy with the other test process: slower than the estimate's two cores.)
    from ftspace.planning import plan

    monkeypatch.setenv("FTSPACE_RUNS", str(tmp_path))  # no run measured: the estimate a first-time user gets
    estimate = plan(RunConfig.from_yaml(ROOT / "examples" / "facts.yaml").to_dict())
    st = runs.Run(run_dir).status()
    measured = {"memory": st["peak_memory_mb"] * 2**20 / 1e9, "time": st["finished"] - st["started"]}
    for what, planned in (("memory", estimate["memory_gb"]), ("time", estimate["seconds"])):
        assert 1 / ESTIMATE_FACTOR[what] < planned / measured[what] < ESTIMATE_FACTOR[what], (what, planned, measured)


ESTIMATE_FACTOR = {"memory": 1.5, "time": 2.5}  # how far an estimate may be off a measured run before a test fails


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tuned_beats_base_on_held_out_paraphrases_and_the_probe_reports_both(demo_run):
    """The demo's run (examples/facts.yaml on the real default model, trained once per session by the `demo_run`
    fixture) scored on held-out paraphrases given as the test set."""
    _, run_dir = demo_run
    run = runs.Run(run_dir)
    assert run.config() == RunConfig.from_yaml(ROOT / "examples" / "facts.yaml")
    card = evaluation.evaluate(run, evaluation.EvalOptions(
        test_dataset=str(ROOT / "tests" / "data" / "facts_heldout.jsonl"), max_new_tokens=32))
    assert card["task"] == "free text" and card["test"]["rows"] == 6
    assert card["tuned"]["token_f1"] > card["base"]["token_f1"] + 0.2, card["examples"]
    assert card["tuned"]["test_loss"] < card["base"]["test_loss"]
    assert sum("Quillhaven" in e["tuned"] for e in card["examples"]) >= 5
    assert not any("Quillhaven" in e["base"] for e in card["examples"])
    f = card["forgetting"]
    assert f["questions"] == len(evaluation.read_probe()) and 0 < f["base"] <= 1 and 0 < f["tuned"] <= 1


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_quick_preset_learns_one_fact_without_breaking_general_answers(default_model_path, runs_dir):
    """A 40-row upload about one invented fact and nothing else: the preset must teach it and keep the probe's net
    change within the warning threshold (before the retune: 60% -> 44%, "The capital of France is Lille"). The
    answers it turned wrong are counted apart from those it turned right (a net change hides them: bench
    section "What small uploads cost in general answers"), and warned of, naming one, beyond LOST_WARN."""
    cfg = RunConfig(model_name="default", dataset=str(ROOT / "tests" / "data" / "one_fact.jsonl"),
                    test_dataset=str(ROOT / "tests" / "data" / "one_fact_test.jsonl"), **PRESETS["quick demo"])
    run, _ = local.start(cfg)
    assert run.wait(timeout=900)["status"] == "completed", run.log_path.read_text()[-3000:]
    card = evaluation.evaluate(run, evaluation.EvalOptions(max_new_tokens=32))
    assert sum("silver otter" in e["tuned"] for e in card["examples"]) >= 5, card["examples"]
    assert card["task_gain"] > 0.3
    f = card["forgetting"]
    assert f["change"] >= -evaluation.GENERAL_DROP_WARN, f
    lost = [p for p in card["probe"] if p["base_right"] and not p["tuned_right"]]
    gained = [p for p in card["probe"] if p["tuned_right"] and not p["base_right"]]
    assert (f["lost"], f["gained"]) == (len(lost), len(gained)) and f["change"] == pytest.approx(
        (len(gained) - len(lost)) / f["questions"])
    assert (f["warning"] is not None) == (len(lost) > evaluation.LOST_WARN * f["questions"]), f
    assert f["warning"] is None or f'"{lost[0]["question"]}"' in f["warning"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_demo_run_exported_to_gguf_answers_as_the_run_does(demo_run, tmp_path):
    """GGUF exports of the demo's run (f16 in-process; q8_0 with its Modelfile through the real command), read back
    by transformers' GGUF loader: the same greedy answers as the tuned model on its prompts (two held-out, two it
    was trained on: the fact it learned, answered from the file alone)."""
    from clitools import cli_process
    from ftspace import export

    _, run_dir = demo_run
    run = runs.Run(run_dir)
    f16 = export.gguf(run, "f16", out_dir=tmp_path / "f16")
    done = cli_process("export", run.id, "--gguf", "q8_0", "--ollama", "--out", tmp_path / "q8",
                       env={"FTSPACE_RUNS": str(run_dir.parent)})
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1] == str(tmp_path / "q8"), done.stderr[-3000:]
    assert "exporting: 5/5" in done.stderr and "_pytree" not in done.stderr  # the bar drew; no library chatter
    q8 = json.loads((tmp_path / "q8" / "export.json").read_text())
    for report in (f16, q8):
        [figures] = report["parity"][:1]
        assert figures["reader"] == "transformers" and figures["prompts"] == export.PARITY_PROMPTS
        assert figures["same_greedy_answers"] == figures["prompts"], figures
        assert figures["mean_kl"] < figures["kl_max"] and figures["perplexity_ratio"] < figures["perplexity_ratio_max"]
    assert f"{q8['parity'][0]['same_greedy_answers']} of 4 greedy answers identical" in done.stdout
    modelfile = (tmp_path / "q8" / "Modelfile").read_text()
    assert modelfile.startswith(f"FROM ./{run.id}-Q8_0.gguf") and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert q8["ollama"]["tools"] == "none in the chat template" and q8["ollama"]["conversations"] == 3  # SmolLM2's
    assert "Ollama TEMPLATE: renders the prompt the chat template renders, to the character, on 3" in done.stdout

    # Without test rows, two training rows are among the prompts: the fact it learned, answered by the file alone
    learned = [e for e in q8["parity"][0]["examples"] if "Zorblax" in e["prompt"]]
    assert learned and all("Quillhaven" in e["export"] and e["export"] == e["run"] for e in learned), learned
