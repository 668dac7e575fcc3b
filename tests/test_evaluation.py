"""Evaluation: metrics against hand-computed values, the test split, the scorecard from real generations,
checkpoints, cancelling, TensorBoard files, a sweep; with the real default model, task gain and forgetting."""

import json
import threading

import pytest

from ftspace import evaluation, runs
from ftspace.targets import local
from ftspace.config import RunConfig
from ftspace.evaluation import metrics

from apptools import ROOT
from clitools import cli
from test_engine import tiny_config


# --- metrics, by hand


def test_exact_match_and_token_f1_by_hand():
    assert metrics.exact_match("  The   Paris! ", "paris") == 1.0  # case, punctuation, articles, spaces
    assert metrics.exact_match("Paris, France", "Paris") == 0.0
    # pred {capital, is, quillhaven} vs ref {quillhaven, is, capital, of, zorblax}: 3 shared;
    # precision 3/3, recall 3/5, F1 = 2 * 1 * 0.6 / 1.6 = 0.75
    assert metrics.token_f1("The capital is Quillhaven", "Quillhaven is the capital of Zorblax") == pytest.approx(0.75)
    # repeated tokens count once per occurrence: pred [a1 x2]... "cat cat" vs "cat": P 1/2, R 1/1 -> 2/3
    assert metrics.token_f1("cat cat", "cat") == pytest.approx(2 / 3)
    assert metrics.token_f1("dog", "cat") == 0.0


def test_rouge_l_by_hand():
    # LCS of "the cat was on the mat" and "the cat sat on the mat" is "the cat on the mat": 5 of 6 tokens
    # each way, so precision = recall = F = 5/6.
    assert metrics.rouge_l("the cat was on the mat", "the cat sat on the mat") == pytest.approx(5 / 6)
    # LCS 2 ("a c"): precision 2/2, recall 2/4 -> F = 2 * 1 * 0.5 / 1.5 = 2/3
    assert metrics.rouge_l("a c", "a b c d") == pytest.approx(2 / 3)
    assert metrics.rouge_l("x y", "a b") == 0.0


def test_labels_are_detected_and_scored():
    refs = ["positive", "negative", "neutral", "positive", "Negative."]
    assert metrics.label_set(refs) == ["negative", "neutral", "positive"]
    assert metrics.label_set(["A long free-text answer here.", "Another one entirely."]) is None
    labels = ["negative", "neutral", "positive"]
    assert metrics.label_accuracy("It is positive.", "positive", labels) == 1.0
    assert metrics.label_accuracy("negative", "positive", labels) == 0.0
    assert metrics.label_accuracy("positive, or maybe neutral", "positive", labels) == 0.0  # two labels named
    cards = evaluation.scorecard(
        [{"text": r, "calls": []} for r in refs],
        {"base": ["negative"] * 5, "tuned": ["positive", "negative", "neutral", "positive", "neutral"]},
        {}, [{"question": "q", "answers": ["a"]}], {"base": ["a"], "tuned": ["a"]})
    assert cards["task"] == "labels" and cards["primary_metric"] == "accuracy"
    assert cards["base"]["accuracy"] == pytest.approx(2 / 5) and cards["tuned"]["accuracy"] == pytest.approx(4 / 5)
    assert cards["task_gain"] == pytest.approx(2 / 5)


def test_general_answers_lost_are_counted_and_warned_of_even_when_the_net_change_rises():
    """A net change adds answers lost to answers gained: 6 lost and 8 gained of 40 reads +5%. The scorecard counts
    both, and warns once more than LOST_WARN (an eighth) of the questions went from right to wrong, naming one; 5
    lost do not warn; a net drop beyond GENERAL_DROP_WARN warns as before."""
    probe = [{"question": f"q{i}", "answers": [f"a{i}"]} for i in range(40)]
    right, wrong = [f"a{i}" for i in range(40)], ["no idea"] * 40

    def card(base_right: set, tuned_right: set) -> dict:
        answers = {"base": [right[i] if i in base_right else wrong[i] for i in range(40)],
                   "tuned": [right[i] if i in tuned_right else wrong[i] for i in range(40)]}
        return evaluation.scorecard([{"text": "x", "calls": []}], {"base": ["x"], "tuned": ["x"]}, {}, probe,
                                    answers)["forgetting"]

    f = card(set(range(20)), set(range(6, 28)))  # 6 lost, 8 gained
    assert (f["lost"], f["gained"], f["change"]) == (6, 8, pytest.approx(2 / 40))
    assert f["warning"].startswith("6 of the 40 general questions the base answered right are answered wrong")
    assert '"q0" → "no idea"' in f["warning"] and "while 8 went the other way (net +5%)" in f["warning"]
    assert evaluation.LOST_WARN * 40 == 5
    assert "6 answers lost, 8 gained" in evaluation.summary({**_card_shell(), "forgetting": f}, with_table=False)
    assert card(set(range(20)), set(range(5, 25)))["warning"] is None  # 5 of 40 lost: within LOST_WARN
    assert card(set(range(20)), set(range(15)))["warning"].startswith("General answers got worse: 38%")


def _card_shell() -> dict:
    return {"primary_metric": "token_f1", "task": "free text", "task_gain": 0.0, "checkpoint": "final",
            "test": {"rows": 1, "rows_available": 1, "capped": False, "source": "x"}}


def test_function_call_metrics_by_hand():
    ref = [{"name": "get_weather", "arguments": {"city": "Lisbon"}}]
    right = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lisbon"}}\n</tool_call>'
    wrong_args = '<tool_call>{"name": "get_weather", "arguments": {"city": "Porto"}}</tool_call>'
    wrong_fn = '<tool_call>{"name": "get_time", "arguments": {"city": "Lisbon"}}</tool_call>'
    broken = '<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>'
    scores = [metrics.tool_call_scores(metrics.parse_calls(t), ref) for t in (right, wrong_args, wrong_fn, broken,
                                                                               "It is sunny.")]
    assert [s["valid_json"] for s in scores] == [1, 1, 1, 0, 0]
    assert [s["right_function"] for s in scores] == [1, 1, 0, 0, 0]
    assert [s["exact_arguments"] for s in scores] == [1, 0, 0, 0, 0]
    # arguments kept as a JSON string compare by value
    assert metrics.tool_call_scores([{"name": "get_weather", "arguments": '{"city": "Lisbon"}'}], ref)[
        "exact_arguments"] == 1.0


def test_probe_answers_match_whole_words():
    assert metrics.contains_answer("A spider has 8 legs.", ["8", "eight"]) == 1.0
    assert metrics.contains_answer("It has 18 legs", ["8", "eight"]) == 0.0
    assert metrics.contains_answer("The first letters are A, B, C.", ["a, b, c"]) == 1.0
    probe = evaluation.read_probe()
    assert len(probe) >= 40 and {"arithmetic", "capitals", "units", "facts", "instructions"} <= {
        q["kind"] for q in probe}


def test_a_probe_of_your_own_and_its_errors(tmp_path):
    good = tmp_path / "mine.jsonl"
    good.write_text('{"question": "2 + 3?", "answers": ["5"]}\n{"question": "Sky?", "answer": "blue"}\n')
    assert [q["answers"] for q in evaluation.read_probe(good)] == [["5"], ["blue"]]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "2 + 3?", "answers": ["5"]}\n{"question": "no answers"}\n')
    with pytest.raises(Exception, match=r"bad.jsonl: row 2: question/answers: each row needs"):
        evaluation.read_probe(bad)


def test_examples_where_tuned_got_worse_come_first():
    targets = [({"messages": [{"role": "user", "content": q}]}, {"text": "paris", "calls": []}) for q in "abc"]
    out = evaluation.per_example(targets, {"base": ["paris", "rome", "paris"], "tuned": ["paris", "paris", "rome"]},
                                 "free text", None)
    assert [e["prompt"] for e in out] == ["c", "a", "b"] and [e["change"] for e in out] == [-1.0, 0.0, 1.0]


# --- the split


def test_test_rows_are_kept_apart_by_the_seed():
    from ftspace.data import held_out_rows

    valid, test = held_out_rows(100, 0.1, 7, test_size=0.2)
    assert (len(valid), len(test)) == (10, 20) and not valid & test
    assert held_out_rows(100, 0.1, 7, test_size=0.2) == (valid, test)  # the same rows every time
    assert held_out_rows(100, 0.1, 8, test_size=0.2) != (valid, test)
    with pytest.raises(Exception, match="leave no training rows"):
        held_out_rows(10, 5, 1, test_size=5)
    with pytest.raises(Exception, match="test_size and test_dataset both set"):
        RunConfig(test_size=0.1, test_dataset="example:chat")


def test_preparation_records_the_split_and_never_trains_on_test_rows(tiny_model, runs_dir):
    from ftspace.engine.prepare import prepare, prepared_dir

    run = runs.create(tiny_config(tiny_model, dataset="example:facts", validation_size=4, test_size=0.25,
                                  mix_general_data=0.5))
    info = prepare(run, None, log=lambda *_: None)
    folder = prepared_dir(run)
    read = lambda name: [json.loads(line) for line in (folder / name).read_text().splitlines()]  # noqa: E731
    train, valid, test = read("train.jsonl"), read("eval.jsonl"), read("test.jsonl")
    assert (len(valid), len(test)) == (4, 8)  # 32 rows: 4 validation, a quarter for test
    own = len(train) - info["general_rows"]
    assert own == 20 and info["general_rows"] == 10  # 0.5 general rows per own row
    key = lambda r: json.dumps(r["messages"])  # noqa: E731
    assert not {key(r) for r in test} & {key(r) for r in train + valid}
    assert info["split"] == {"seed": run.config().seed, "validation": 4, "test": 8, "train": 30}
    import hashlib

    assert info["train_sha256"] == hashlib.sha256((folder / "train.jsonl").read_bytes()).hexdigest()


# --- the scorecard, checkpoints, cancel, TensorBoard (tiny model: fast; real generations)


@pytest.fixture(scope="module")
def tiny_run(tiny_model, tmp_path_factory):
    import os

    root = tmp_path_factory.mktemp("eval-runs")
    old = os.environ.get("FTSPACE_RUNS")
    os.environ["FTSPACE_RUNS"] = str(root)
    try:
        run, _ = local.start(tiny_config(tiny_model, dataset="example:tools", test_size=3, save_steps=2, max_seq_length=512,
                                        save_total_limit=3, max_steps=6))
        st = run.wait(timeout=300)
        assert st["status"] == "completed", run.log_path.read_text()[-3000:]
        yield run
    finally:
        if old is None:
            os.environ.pop("FTSPACE_RUNS", None)
        else:
            os.environ["FTSPACE_RUNS"] = old


def test_scorecard_from_real_generations(tiny_run):
    seen = []
    card = evaluation.evaluate(tiny_run, evaluation.EvalOptions(max_new_tokens=16, max_rows=2),
                               progress=lambda *p: seen.append(p))
    assert {"base", "tuned", "forgetting", "examples", "probe"} <= set(card)
    assert card["task"] == "function calling"  # example:tools: its test rows call tools
    for side in ("base", "tuned"):
        assert {"valid_json", "right_function", "exact_arguments", "test_loss", "perplexity"} <= set(card[side])
    assert card["test"] == {"source": "tools.jsonl", "rows": 2, "rows_available": 3, "capped": True, "max_rows": 2,
                            "max_new_tokens": 16}
    assert len(card["examples"]) == 2 and len(card["probe"]) == len(evaluation.read_probe())
    # The metrics are those of the answers recorded: recompute one from its text.
    e = card["examples"][0]
    assert e["tuned_score"] == metrics.tool_call_scores(metrics.parse_calls(e["tuned"]), [
        json.loads(line) for line in e["reference"].splitlines()])["exact_arguments"]
    assert card["base"]["test_loss"] != card["tuned"]["test_loss"]  # adapter off and on really differ
    assert seen[-1][0] == seen[-1][1] and seen[-1][1] == 4 * 2 + 2 * len(card["probe"])
    assert evaluation.saved(tiny_run)["final"]["tuned"] == card["tuned"]



def test_the_bases_probe_answers_are_kept_for_the_next_evaluation(tiny_run, monkeypatch):
    """A second evaluation on the same base (another checkpoint here) takes the base's answers to the probe from the
    cache instead of generating them again, and they are the answers the base gives."""
    from ftspace.env import cache_dir

    options = dict(max_new_tokens=4, max_rows=1)
    first = evaluation.evaluate(tiny_run, evaluation.EvalOptions(checkpoint=4, **options), save=False)
    assert list((cache_dir() / "base-probe").glob("*.json"))
    asked, answer = [], evaluation.Evaluator.answer

    def counted(self, prompts, max_new_tokens, base):
        asked.append((base, max_new_tokens))
        return answer(self, prompts, max_new_tokens, base)

    monkeypatch.setattr(evaluation.Evaluator, "answer", counted)
    second = evaluation.evaluate(tiny_run, evaluation.EvalOptions(checkpoint=6, **options), save=False)
    probe_calls = [base for base, n in asked if n == evaluation.PROBE_NEW_TOKENS]
    assert probe_calls and not any(probe_calls)  # the tuned side asked, the base side kept
    assert [p["base"] for p in second["probe"]] == [p["base"] for p in first["probe"]]
    for path in (cache_dir() / "base-probe").glob("*.json"):
        path.unlink()
    asked.clear()
    fresh = evaluation.evaluate(tiny_run, evaluation.EvalOptions(checkpoint=6, **options), save=False)
    assert any(base for base, n in asked if n == evaluation.PROBE_NEW_TOKENS)  # generated again, and the same
    assert [p["base"] for p in fresh["probe"]] == [p["base"] for p in second["probe"]]

def test_checkpoints_can_be_scored_and_chosen(tiny_run):
    from ftspace.engine.saving import use_checkpoint

    kept = [p.name for p in tiny_run.checkpoints()]
    assert kept == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]  # save_total_limit 3
    card = evaluation.evaluate(tiny_run, evaluation.EvalOptions(checkpoint=2, max_rows=1, max_new_tokens=4,
                                                                probe_file=str(ROOT / "tests/data/probe_small.jsonl")))
    assert card["checkpoint"] == "checkpoint-2" and card["adapter_step"] == 2
    with pytest.raises(Exception, match="no checkpoint at step 3: the kept ones are at steps 2, 4, 6"):
        tiny_run.checkpoint(3)

    final = (tiny_run.adapter_dir / "adapter_model.safetensors").read_bytes()
    use_checkpoint(tiny_run, 2)
    assert (tiny_run.adapter_dir / "adapter_model.safetensors").read_bytes() == (
        tiny_run.checkpoint(2) / "adapter_model.safetensors").read_bytes() != final
    assert tiny_run.status()["adapter_checkpoint"] == "checkpoint-2"
    from ftspace.hub import model_card

    text = model_card(tiny_run, "me/x")
    assert "Adapter published: checkpoint-2 (step 2)" in text and "Task gain" in text and "sha256" in text
    # the scorecard of the published adapter as the Hub's model-index: the task metric and the probe, tuned and base
    import yaml

    [index] = yaml.safe_load(text.split("---")[1])["model-index"]
    test, probe = index["results"]
    assert index["name"] == "x" and test["task"]["name"] == card["task"]
    assert [m["name"] for m in test["metrics"]][0].endswith("(tuned)")
    assert {m["value"] for m in probe["metrics"]} <= {round(card["forgetting"][s], 4) for s in ("tuned", "base")}
    assert "General answers: 3 general questions were asked before publishing" in text  # probe_small.jsonl
    use_checkpoint(tiny_run, None)
    assert (tiny_run.adapter_dir / "adapter_model.safetensors").read_bytes() == final
    assert tiny_run.status()["adapter_checkpoint"] is None


def test_cancel_stops_the_evaluation_and_saves_nothing(tiny_run):
    cancel = threading.Event()
    (tiny_run.path / "evaluations" / "checkpoint-4.json").unlink(missing_ok=True)

    def progress(done, total, what):
        if done > 0:
            cancel.set()

    with pytest.raises(evaluation.Cancelled):
        evaluation.evaluate(tiny_run, evaluation.EvalOptions(checkpoint=4, max_new_tokens=4), progress=progress,
                            cancel=cancel)
    assert "checkpoint-4" not in evaluation.saved(tiny_run)


def test_an_evaluation_longer_than_its_gpu_call_ends_in_time_with_one_line(tiny_run, monkeypatch):
    """ZeroGPU would kill a call that outlasts its duration with nothing said: the evaluation inside it stops
    first (here a 2 s call) and says why, and nothing is saved."""
    from ftspace.targets import zerogpu

    monkeypatch.setenv("FTSPACE_ZEROGPU_MAX_CALL_S", "2")
    (tiny_run.path / "evaluations" / "checkpoint-2.json").unlink(missing_ok=True)
    options = evaluation.EvalOptions(checkpoint=2, max_new_tokens=16)
    items = list(zerogpu.evaluate_on_gpu(str(tiny_run.path), vars(options), None, "free"))
    assert isinstance(items[-1], zerogpu.CarriedError) and items[-1].kind == "FtspaceError"
    assert items[-1].message.startswith("The evaluation did not fit one ZeroGPU call of your tier (2 s): lower the "
                                        "test rows or the max new tokens"), items[-1]
    assert "checkpoint-2" not in evaluation.saved(tiny_run)


def test_on_zerogpu_the_test_rows_are_read_once_on_the_cpu(tiny_run, monkeypatch):
    """ZeroGPU: the checks that need no GPU (test rows, adapter) run before the call, and what they found is handed
    to it, so the rows (a Hub test set: a download) are not read again while the visitor's GPU seconds run."""
    from ftspace import env, targets
    from ftspace.evaluation import running

    reads, read = [], running.test_rows

    def counted(*args, **kwargs):
        reads.append(1)
        return read(*args, **kwargs)
    monkeypatch.setattr(running, "test_rows", counted)
    monkeypatch.setattr(env, "on_zerogpu", lambda: True)
    options = evaluation.EvalOptions(checkpoint=4, max_rows=1, max_new_tokens=4,
                                     probe_file=str(ROOT / "tests/data/probe_small.jsonl"))
    items = list(targets.evaluation_updates(tiny_run, options, targets.Caller.local(None), "free"))
    assert items[-1][0] == "done" and items[-1][1]["test"]["rows"] == 1, items[-1]
    assert reads == [1]


def test_tensorboard_event_files_hold_the_loss(tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = list((tiny_run.path / "tensorboard").rglob("events.out.tfevents.*"))
    assert files, "no TensorBoard event file"
    acc = EventAccumulator(str(files[0].parent))
    acc.Reload()
    losses = acc.Scalars("train/loss")
    logged = [e["loss"] for e in tiny_run.all_events() if "loss" in e]
    assert [round(s.value, 4) for s in losses] == [round(v, 4) for v in logged] and len(losses) == 6


def test_trackio_logs_the_run_when_asked(tiny_model, runs_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    run, _ = local.start(tiny_config(tiny_model, max_steps=3, trackio_project="ftspace-test"))
    assert run.wait(timeout=300)["status"] == "completed", run.log_path.read_text()[-3000:]
    [db] = list((tmp_path / "trackio").rglob("ftspace-test*.db"))
    import sqlite3

    with sqlite3.connect(db) as con:
        logged = [row[0] for row in con.execute("select metrics from metrics")]
    assert sum(b"train/loss" in bytes(m) for m in logged) == 3, logged


def test_eval_cli_json(tiny_run):
    result = cli("eval", str(tiny_run.path), "--max-rows", "1", "--max-new-tokens", "4", "--probe",
                 str(ROOT / "tests/data/probe_small.jsonl"), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    card = json.loads(result.stdout)
    assert {"base", "tuned", "forgetting"} <= set(card) and {"base", "tuned"} <= set(card["forgetting"])
    bad = cli("eval", str(tiny_run.path), "--checkpoint", "5")
    assert bad.returncode == 2 and "no checkpoint at step 5" in bad.stderr


def test_a_two_trial_sweep_resumes_after_a_restart_and_names_a_best_trial(tiny_model, runs_dir, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from ftspace import sweep

    base = tmp_path / "base.yaml"
    base.write_text(tiny_config(tiny_model, max_steps=-1, num_train_epochs=1.0, save_steps=2).to_yaml())
    # The sweep's process dies (SIGKILL) while its first trial trains; `--resume` goes on from the file.
    proc = subprocess.Popen([sys.executable, "-m", "ftspace", "sweep", "--config", str(base), "--trials", "2",
                             "--set", "seed=11"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=os.environ.copy())
    deadline = time.time() + 120
    while time.time() < deadline and not any(s.read()["trials"] for s in sweep.list_sweeps()):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    [sw] = sweep.list_sweeps()
    first = sw.read()["trials"]
    assert len(first) == 1 and first[0]["status"] == "queued"

    result = cli("sweep", "--resume", sw.id)
    assert result.returncode == 0, result.stderr[-3000:]
    data = sw.read()
    assert len(data["trials"]) == 2 and all(t["status"] == "completed" for t in data["trials"])
    assert data["trials"][0]["run"] == first[0]["run"]  # the interrupted trial's own run, not a new one
    assert all(isinstance(t["value"], float) for t in data["trials"])
    best = sw.best()
    assert best["value"] == min(t["value"] for t in data["trials"]) and f"best: trial {best['number']}" in result.stderr
    for t in data["trials"]:  # each trial an ordinary run, with held-out rows and early stopping
        cfg = runs.get(t["run"]).config()
        assert cfg.learning_rate == t["params"]["learning_rate"] and cfg.lora_r == t["params"]["lora_r"]
        assert cfg.validation_size == sweep.TRIAL_VALIDATION and cfg.early_stopping_patience == sweep.TRIAL_PATIENCE
        assert t["value"] == sweep.score(runs.get(t["run"]))
    assert RunConfig.from_yaml(sw.path / "best.yaml").learning_rate == best["params"]["learning_rate"]


def test_two_runs_side_by_side_on_the_same_rows(tiny_run):
    """`ftspace eval RUN --against OTHER`: the other run (here a copy of the run whose adapter is its step-2
    checkpoint) answers the run's own test rows and the same probe; the run's scorecard is saved as its evaluation,
    the other's is not (those rows are not its own); the table shows each metric for the base and both runs."""
    import shutil

    other_path = tiny_run.path.with_name(tiny_run.id + "-other")
    shutil.copytree(tiny_run.path, other_path, ignore=shutil.ignore_patterns("evaluations"))
    shutil.rmtree(other_path / "adapter")
    shutil.copytree(tiny_run.checkpoint(2), other_path / "adapter",
                    ignore=shutil.ignore_patterns("optimizer*", "scheduler*", "rng*", "trainer_state*",
                                                  "training_args*"))
    args = ["--max-rows", "2", "--max-new-tokens", "4", "--probe", str(ROOT / "tests/data/probe_small.jsonl")]
    result = cli("eval", str(tiny_run.path), "--against", str(other_path), *args, "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    pair = json.loads(result.stdout)
    a, b = pair["run"], pair["against"]
    assert a["run"] == tiny_run.id and b["run"] == other_path.name
    assert a["test"] == b["test"] and a["test"]["rows"] == 2  # the same rows, from the run's own test split
    assert sorted(e["prompt"] for e in a["examples"]) == sorted(e["prompt"] for e in b["examples"])
    assert a["base"] == b["base"] and a["forgetting"]["base"] == b["forgetting"]["base"]  # one base, one answer
    assert json.loads((tiny_run.path / "evaluations" / "final.json").read_text())["tuned"] == a["tuned"]
    assert not (other_path / "evaluations").exists()

    shown = cli("eval", str(tiny_run.path), "--against", str(other_path), *args)
    assert shown.returncode == 0, shown.stderr[-2000:]
    header = f"| metric | base | {tiny_run.id} | {other_path.name} | {other_path.name} − {tiny_run.id} |"
    assert header in shown.stdout, shown.stdout
    key = a["primary_metric"]  # the tools example: tool-call metrics
    row = next(line for line in shown.stdout.splitlines() if line.startswith(f"| {evaluation.METRIC_NAMES[key]} |"))
    assert row.split(" | ")[2:4] == [f"{a['tuned'][key]:.3f}", f"{b['tuned'][key]:.3f}"], row
    assert "differ on" in shown.stdout

    same = cli("eval", str(tiny_run.path), "--against", tiny_run.id, *args)
    assert same.returncode == 2 and "that is the run itself" in same.stderr
    assert len(same.stderr.strip().splitlines()) == 1, same.stderr

    # One base: its answers and test loss are computed once, for the first run, and are those an evaluation of the
    # other run alone on the same rows computes.
    other, seen = runs.Run(other_path), []
    options = evaluation.EvalOptions(max_rows=2, max_new_tokens=4,
                                     probe_file=str(ROOT / "tests/data/probe_small.jsonl"))
    pair = evaluation.compare(tiny_run, other, options, progress=lambda done, total, what: seen.append(what))
    assert sum("the same base as the other run's" in what for what in seen) == 1, seen
    assert not any(what.startswith(f"{other.id}: base test loss") for what in seen), seen
    pairs, source, _, other_adapter = evaluation.compare_preflight(tiny_run, other, options)
    alone = evaluation.evaluate(other, options, save=False, checked=(pairs, source, other_adapter))
    assert alone["base"] == pair["against"]["base"] and alone["tuned"] == pair["against"]["tuned"]
    assert sorted(e["base"] for e in alone["examples"]) == sorted(e["base"] for e in pair["against"]["examples"])
