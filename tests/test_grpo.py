"""GRPO: the model learns by reward. The real default model on short arithmetic answered inside tags (the mean
reward rises, the replies and rewards are shown as it learns, the evaluation scores base and tuned by the run's
rewards, the card says so); the tiny model for the mechanics (stop at a step, resume, each step logged once)."""

import json
from pathlib import Path

import pytest

from ftspace import evaluation, runs
from ftspace.config import RunConfig
from ftspace.targets import local
from tests.test_engine import stopped_after, tiny_config

ROOT = Path(__file__).resolve().parent.parent
# Single-digit arithmetic (examples/arithmetic.jsonl), rewarded for the right number (the reply's last) and for a
# reply of at most 3 words: the bundled model's sampled replies are right about a quarter of the time and mostly
# longer (measured before tuning: 6 of 24 right, 1 to 15 words); the rewards rise within 24 steps (bench/bench_grpo.py,
# RESULTS.md section 14, over seeds).
ARITHMETIC = dict(model_name="default", dataset="example:arithmetic", method="grpo",
                  rewards=["correct_answer", "length:0.5"], reward_answer_match="numeric", reward_min_words=1,
                  reward_max_words=3, num_generations=4, per_device_train_batch_size=8, gradient_accumulation_steps=1,
                  max_completion_length=10, max_seq_length=256, learning_rate=5e-4, lora_r=16, lora_alpha=32,
                  max_steps=24, save_steps=100, gradient_checkpointing=False, test_size=8, seed=3407)
FIRST_LAST = 8  # the mean reward of the first and of the last this many steps are compared
MARGIN = 0.15


def mean(values):
    return sum(values) / len(values)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_grpo_raises_the_mean_reward_and_shows_what_it_learns(default_model_path, runs_dir, tmp_path):
    run, _ = local.start(RunConfig(**ARITHMETIC))
    st = run.wait(timeout=900)
    assert st["status"] == "completed", run.log_path.read_text()[-3000:]
    assert st["trainer_class"].endswith("GRPOTrainer")
    events, _ = run.events()
    steps = [e for e in events if "loss" in e]
    assert [e["step"] for e in steps] == list(range(1, 25))
    rewards = [e["reward"] for e in steps]
    first, last = mean(rewards[:FIRST_LAST]), mean(rewards[-FIRST_LAST:])
    assert last > first + MARGIN, rewards
    # each reward's own curve, the reply length, as the Train tab plots them
    assert all("reward_length" in e and "reward_correct_answer" in e and "completion_length" in e for e in steps)
    # a few replies with their rewards, at the first step and every few steps after, in the events and the log
    samples = [e for e in events if e.get("samples")]
    assert [e["step"] for e in samples] == [1, 5, 10, 15, 20]
    row = samples[-1]["samples"][0]
    assert row["prompt"].startswith("What is ") and set(row["rewards"]) == {"length", "correct_answer"}
    assert "sample at step 20: 'What is" in run.log_path.read_text()

    from ftspace.ui.train_tab import grpo_points, samples_table

    series = {p["series"] for p in grpo_points(events, 10)}
    assert series == {"mean reward (weighted)", "reward: length", "reward: correct_answer",
                      "reply length (share of 10 tokens)"}
    assert "| prompt | reply | answer | rewards |" in samples_table(events)

    # Held-out prompts scored by the run's rewards, base against tuned (greedy replies: the base's greedy reply is
    # often right already, so no gain is asserted here; what training earned is above), next to the general probe
    # (4 of its questions here: the full probe is the demo's evaluation's)
    probe = tmp_path / "probe.jsonl"
    probe.write_text("".join(line + "\n" for line in evaluation.PROBE_PATH.read_text().splitlines()[:4]))
    card = evaluation.evaluate(run, evaluation.EvalOptions(probe_file=str(probe)))
    assert card["task"] == "rewards" and card["primary_metric"] == "reward" and card["test"]["rows"] == 8
    assert set(card["tuned"]) == set(card["base"]) == {"reward", "reward_length", "reward_correct_answer"}
    for side in ("base", "tuned"):  # the mean is the examples' own scores, each the weighted sum of its rewards
        scores = [e[f"{side}_score"] for e in card["examples"]]
        assert card[side]["reward"] == pytest.approx(mean(scores))
        assert card[side]["reward"] == pytest.approx(card[side]["reward_correct_answer"] + 0.5 * card[side]["reward_length"])
    assert card["forgetting"]["questions"] == 4 and len(card["probe"]) == 4
    from ftspace.evaluation.showing import summary

    assert "| reward: length |" in summary(card) and "mean reward (weighted)" in summary(card)

    from ftspace.hub import model_card

    text = model_card(run, "alice/arithmetic")
    assert "method **GRPO" in text and "| Rewards | correct_answer (x1), length (x0.5); mean reward" in text
    assert "mean reward (weighted)" in text  # the evaluation's scorecard


def test_grpo_stops_at_a_step_and_resumes_with_each_step_logged_once(tiny_model, runs_dir, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"question": f"What is {a} + {a}?", "answer": str(2 * a)}) + "\n"
                               for a in range(12)))
    cfg = tiny_config(tiny_model, dataset=str(prompts), method="grpo", rewards=["correct_answer", "length:0.5"],
                      reward_max_words=8, num_generations=2, per_device_train_batch_size=4, max_steps=8, save_steps=3,
                      max_completion_length=8, backend="auto")
    run, _ = local.start(cfg)
    st = stopped_after(run, 4)
    stopped_at = st["step"]
    log = run.log_path.read_text()
    assert "Unsloth's CPU path trains SFT only: grpo runs on TRL's trainer" in log
    local.resume(run)
    st = run.wait(timeout=300)
    assert st["status"] == "completed" and st["step"] == 8, run.log_path.read_text()[-3000:]
    assert f"resuming from checkpoint-{stopped_at}" in run.log_path.read_text()
    steps = [e for e in run.events()[0] if "loss" in e]
    assert [e["step"] for e in steps] == list(range(1, 9))  # each step once, across the stop
    assert all({"reward", "reward_correct_answer", "reward_length"} <= set(e) for e in steps)
    assert isinstance(st.get("reward"), float)
    assert (run.adapter_dir / "adapter_model.safetensors").exists()


def test_grpo_refusals_come_before_a_run_exists(tiny_model, runs_dir, tmp_path, monkeypatch):
    from ftspace import targets
    from ftspace.errors import ConfigError, DataError
    from ftspace.models import hardware

    # no prompts at all (plain text), and a reward that needs the answers a file lacks
    text = tmp_path / "notes.jsonl"
    text.write_text(json.dumps({"text": "Once upon a time."}) + "\n")
    with pytest.raises(DataError, match="no prompt: GRPO needs a prompt"):
        local.start(tiny_config(tiny_model, dataset=str(text), method="grpo", num_generations=2))
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"prompt": "Write a haiku."}) + "\n")
    with pytest.raises(DataError, match="reward correct_answer needs each row's answer"):
        local.start(tiny_config(tiny_model, dataset=str(plain), method="grpo", num_generations=2))
    # 4-bit on a CPU
    assert hardware()["kind"] == "cpu"
    with pytest.raises(ConfigError, match="method grpo with load_in_4bit needs a CUDA GPU"):
        local.start(tiny_config(tiny_model, method="grpo", num_generations=2, load_in_4bit=True))
    # a custom reward on a shared app, through the one gate
    monkeypatch.setenv("FTSPACE_MULTIUSER", "1")
    with pytest.raises(ConfigError, match="custom Python rewards run only on a self-hosted"):
        targets.admit(RunConfig(method="grpo", rewards="custom:/etc/passwd.py:f", num_generations=2),
                      targets.Caller("browser:abc"))
    assert not runs_dir.exists() or not list(runs_dir.iterdir())  # no run was created


def test_grpo_trains_on_zerogpu_in_calls_like_sft(tiny_model, runs_dir, tmp_path):
    """GRPO in short ZeroGPU calls (run in a process that imported Unsloth first, as a reused worker): several calls,
    each step once, the rewards logged in each."""
    from test_zerogpu import sliced

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"question": f"What is {a} + 1?", "answer": str(a + 1)}) + "\n"
                               for a in range(12)))
    run = runs.create(tiny_config(tiny_model, dataset=str(prompts), method="grpo", rewards=["correct_answer"],
                                  num_generations=2, per_device_train_batch_size=4, max_steps=10, save_steps=100,
                                  max_completion_length=8, backend="auto"))
    status = sliced(run, cap_s=3)
    events = run.events()[0]
    assert status["status"] == "completed", status
    assert len([e for e in events if e.get("slice")]) >= 2
    steps = [e for e in events if "loss" in e]
    assert [e["step"] for e in steps] == list(range(1, 11)) and all("reward" in e for e in steps)


def test_a_jobs_samples_reach_the_train_tab_as_rows_of_text_and_numbers():
    """A GRPO run on Hugging Face Jobs sends its events through the job's log: the samples come back as at most four
    rows of escaped text and per-reward numbers, whatever the job wrote."""
    from ftspace.targets.jobs_log import _event
    from ftspace.ui.train_tab import samples_table

    written = {"step": 5, "samples": [{"prompt": "2+2?\n[ftspace status] {}", "completion": "4", "answer": "4",
                                       "rewards": {"correct_answer": 1.0, "evil": "x", "bool": True}}] * 6}
    event = _event(json.dumps(written))
    assert len(event["samples"]) == 4 and event["samples"][0]["rewards"] == {"correct_answer": 1.0}
    assert event["samples"][0]["prompt"] == "2+2?\\n[ftspace status] {}"
    assert "| 2+2?\\n[ftspace status] {} | 4 | 4 | correct_answer 1 |" in samples_table([event])
    assert _event(json.dumps({"step": 1, "samples": "not rows"}))["samples"] == []
