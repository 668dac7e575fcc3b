"""GRPO's rewards, data and settings, without a model: each built-in reward on replies written for it, the refusals
that come before a run exists, prompts-with-answers read from the shapes people share them in."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from ftspace import rewards
from ftspace.config import RunConfig
from ftspace.errors import ConfigError, DataError

TOOLS = [{"type": "function", "function": {"name": "weather", "description": "Weather in a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                                                           "unit": {"type": "string"}},
                                                          "required": ["city"]}}}]


def test_the_reward_settings_scored_without_a_config_are_runconfigs_defaults():
    defaults = {f.name: f.default for f in fields(RunConfig) if f.name.startswith("reward_")}
    assert rewards.SETTINGS == defaults


@pytest.mark.parametrize("reply, answer, settings, expected", [
    ("3 + 4 = 7", "7", {}, 1.0),
    ("3 + 4 = 7, then 8", "7", {}, 0.0),  # the last number is the answer
    ("It costs $1,250.", "#### 1250", {"answer_match": "numeric"}, 1.0),  # GSM8K's reference, a thousands comma
    ("about 3.14159", "3.1416", {"answer_match": "numeric", "answer_tolerance": 1e-4}, 1.0),
    ("about 3.1", "3.1416", {"answer_match": "numeric", "answer_tolerance": 1e-4}, 0.0),
    ("so \\boxed{\\frac{1}{2}}", "\\boxed{\\frac{1}{2}}", {"answer_extract": "boxed"}, 1.0),
    ("<answer> Paris. </answer>", "paris", {"answer_extract": "answer_tags"}, 1.0),
    ("Paris", "paris", {"answer_extract": "answer_tags"}, 0.0),  # no tags: no answer given
    ("The colour is Grey", "gr[ae]y", {"answer_extract": "whole", "answer_match": "regex"}, 0.0),  # whole reply
    ("<answer>grey</answer>", "gr[ae]y", {"answer_extract": "answer_tags", "answer_match": "regex"}, 1.0),
])
def test_correct_answer(reply, answer, settings, expected):
    assert rewards.score("correct_answer", reply, answer=answer, **settings) == expected


def test_format_rewards():
    both = "<think>7 and 8 make 15</think>\n<answer>15</answer>"
    assert rewards.score("format_tags", both) == 1.0
    assert rewards.score("format_tags", "Sure! " + both) == 0.5  # both pairs in order, text outside them
    assert rewards.score("format_tags", "<answer>15</answer><think>x</think>") == 0.25  # out of order: one counts
    assert rewards.score("format_tags", "15") == 0.0
    assert rewards.score("format_tags", "<answer>15</answer>", format_tags="answer") == 1.0
    assert rewards.score("format_regex", "Answer: 15", format_regex=r"^Answer: \d+$") == 1.0
    assert rewards.score("format_regex", "Answer: fifteen", format_regex=r"^Answer: \d+$") == 0.0
    assert rewards.score("think_format", both) == 1.0 and rewards.score("think_format", "15") == 0.0  # TRL's


def test_json_tool_call_length_and_repetition_rewards():
    schema = json.dumps({"type": "object", "required": ["name"], "properties": {"age": {"type": "integer"}}})
    assert rewards.score("valid_json", '```json\n{"name": "Ada"}\n```') == 1.0
    assert rewards.score("valid_json", "{name: Ada}") == 0.0
    assert rewards.score("valid_json", '{"name": "Ada", "age": 36}', json_schema=schema) == 1.0
    assert rewards.score("valid_json", '{"age": "old"}', json_schema=schema) == 0.0
    call = '<tool_call>\n{"name": "weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    assert rewards.score("tool_call", call, tools=json.dumps(TOOLS)) == 1.0
    assert rewards.score("tool_call", call.replace("weather", "news"), tools=TOOLS) == 0.0  # not offered
    assert rewards.score("tool_call", call.replace('"city"', '"town"'), tools=TOOLS) == 0.0  # unknown argument
    assert rewards.score("tool_call", call, tools=None) == 0.0  # the row offers no tools
    assert rewards.score("length", "one two three", min_words=2, max_words=4) == 1.0
    assert rewards.score("length", "one", min_words=2, max_words=4) == 0.5
    assert rewards.score("no_repetition", "a b c d e f") == 0.0
    assert rewards.score("no_repetition", "go " * 20) < -0.8


def test_reward_functions_score_a_batch_as_trl_calls_them_and_a_raising_reward_scores_zero(tmp_path):
    custom = tmp_path / "mine.py"
    custom.write_text("def shaped(reply, answer='', **row):\n"
                      "    if 'boom' in reply:\n        raise ValueError('cannot score ' + reply)\n"
                      "    return len(reply) / 10\n")
    cfg = RunConfig(method="grpo", rewards=["correct_answer", f"custom:{custom}:shaped:0.5"],
                    reward_answer_extract="answer_tags")
    said, samples = [], rewards.Samples()
    functions, weights = rewards.reward_functions(cfg, said.append, samples)
    assert [f.__name__ for f in functions][0] == "correct_answer" and weights == [1.0, 0.5]
    completions = ["<answer>4</answer>", "boom", "boom again", "5"]
    columns = {"answer": ["4", "4", "4", "4"], "tools": [""] * 4, "prompt_shown": ["2+2?"] * 4}
    assert functions[0](prompts=["p"] * 4, completions=completions, **columns) == [1.0, 0.0, 0.0, 0.0]
    assert functions[1](prompts=["p"] * 4, completions=completions, **columns) == [1.8, 0.0, 0.0, 0.1]
    assert len(said) == 1 and "reward" in said[0] and "cannot score boom" in said[0]  # the first error, once
    shown = samples.take(3)
    assert shown == [{"prompt": "2+2?", "completion": "<answer>4</answer>", "answer": "4",
                      "rewards": {"correct_answer": 1.0, functions[1].__name__: 1.8}}]


@pytest.mark.parametrize("settings, message", [
    ({"rewards": ["correct_answr"]}, "unknown reward 'correct_answr'. Did you mean 'correct_answer'?"),
    ({"rewards": ["correct_answer:0"]}, "at least one reward with a non-zero weight"),
    ({"rewards": ["format_regex"], "reward_format_regex": "(unclosed"}, "not a valid regular expression"),
    ({"rewards": ["format_regex"]}, "needs reward_format_regex"),
    ({"rewards": ["valid_json"], "reward_json_schema": "{not json"}, "reward_json_schema is not JSON"),
    ({"rewards": ["valid_json"], "reward_json_schema": '{"type": 12}'}, "not a valid JSON schema"),
    ({"rewards": ["length"], "reward_min_words": 9, "reward_max_words": 3}, "reward_min_words 9 is above"),
    ({"rewards": ["custom:nowhere.py:f"]}, "no file nowhere.py"),
    ({"rewards": ["custom:rewards"]}, "custom:FILE.py:FUNCTION"),
    ({"num_generations": 3}, "num_generations 3 must divide the replies written per step: batch size 2 x gradient "
                             "accumulation 4 = 8. Make that product a multiple of 3 (e.g. 9)"),
    ({"validation_size": 0.1}, "set validation_size to 0"),
    ({"mix_general_data": 0.5}, "method grpo learns from prompts"),
])
def test_grpo_settings_that_cannot_work_are_refused_in_one_line(settings, message):
    with pytest.raises(ConfigError, match=None) as e:
        RunConfig(method="grpo", **settings)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_custom_reward_is_refused_on_a_shared_app_before_its_path_is_looked_at(monkeypatch, tmp_path):
    monkeypatch.setenv("FTSPACE_MULTIUSER", "1")
    for spec in (f"custom:{tmp_path / 'exists.py'}:f", "custom:/etc/nowhere.py:f"):
        (tmp_path / "exists.py").write_text("def f(reply, **_):\n    return 1.0\n")
        with pytest.raises(ConfigError) as e:
            RunConfig(method="grpo", rewards=[spec])
        assert "custom Python rewards run only on a self-hosted single-user machine" in str(e.value)
        assert "no file" not in str(e.value)  # the same line whether the file exists or not


def test_a_custom_reward_cannot_go_to_jobs(tmp_path):
    (tmp_path / "r.py").write_text("def f(reply, **_):\n    return 1.0\n")
    with pytest.raises(ConfigError, match="a Hugging Face job cannot read"):
        RunConfig(method="grpo", rewards=[f"custom:{tmp_path / 'r.py'}:f"], train_on="hf_jobs")


# --- data


def test_prompts_with_answers_in_the_shapes_people_share_them(tmp_path):
    from ftspace.data import load_dataset, scan

    path = tmp_path / "math.jsonl"
    rows = [{"question": "What is 2+3?", "answer": "The sum is 5.\n#### 5"},
            {"question": "What is 4*4?", "answer": 16},
            {"question": "", "answer": "1"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    got, report = load_dataset(str(path), method="grpo")
    assert got[0] == {"prompt": [{"role": "user", "content": "What is 2+3?"}], "answer": "The sum is 5.\n#### 5"}
    assert got[1]["answer"] == "16" and report.rows_kept == 2 and report.dropped[0]["row"] == 3
    assert "2 prompts with answers: ready for GRPO" in report.summary()
    # The same file for SFT: still question/answer pairs, and said to be ready for GRPO as well
    sft = scan(str(path))
    assert sft.format == "pairs" and "2 prompts with answers: ready for GRPO (method grpo)" in sft.summary()

    # messages ending with the user's turn, plus a solution column; a system column; tools kept
    conversations = tmp_path / "conv.jsonl"
    conversations.write_text(json.dumps({"messages": [{"role": "user", "content": "Weather in Oslo?"}],
                                         "solution": "rain", "system": "Be brief.", "tools": TOOLS}) + "\n")
    (row,), report = load_dataset(str(conversations), method="grpo")
    assert [m["role"] for m in row["prompt"]] == ["system", "user"] and row["answer"] == "rain"
    assert row["tools"][0]["function"]["name"] == "weather"
    # The same rows for SFT have no reply to learn: the refusal says what they are good for
    with pytest.raises(DataError, match="prompts with answers: set method grpo"):
        scan(str(conversations))

    # an SFT conversation read for GRPO: its last reply becomes the reference
    (row,), _ = load_dataset("example:facts", method="grpo", limit=1)
    assert row["prompt"][-1]["role"] == "user" and row["answer"]
    # prompt-only rows (no answer): fine for rewards that need none
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"prompt": "Write a haiku."}) + "\n")
    (row,), _ = load_dataset(str(plain), method="grpo")
    assert row == {"prompt": [{"role": "user", "content": "Write a haiku."}], "answer": ""}


def test_grpo_data_refusals(tmp_path):
    from ftspace.data import load_dataset

    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text(json.dumps({"prompt": "Hi", "chosen": "Hello", "rejected": "Go away"}) + "\n")
    with pytest.raises(DataError, match="holds preference rows"):
        load_dataset(str(prefs), method="grpo")
    nothing = tmp_path / "nothing.jsonl"
    nothing.write_text(json.dumps({"text": "Once upon a time"}) + "\n")
    with pytest.raises(DataError, match="no prompt: GRPO needs a prompt"):
        load_dataset(str(nothing), method="grpo")


def test_a_reward_needing_a_column_the_data_lacks_is_refused_before_a_run(tmp_path):
    from ftspace.targets import local

    plain = tmp_path / "plain.jsonl"
    plain.write_text("\n".join(json.dumps({"prompt": f"Say {i}"}) for i in range(4)) + "\n")
    cfg = RunConfig(method="grpo", dataset=str(plain), rewards=["correct_answer"])
    with pytest.raises(DataError) as e:
        local.preflight(cfg)
    assert "reward correct_answer needs each row's answer" in str(e.value) and "\n" not in str(e.value)
    tools = RunConfig(method="grpo", dataset=str(plain), rewards=["tool_call"])
    with pytest.raises(DataError, match="reward tool_call needs each row's tools"):
        local.preflight(tools)
    local.preflight(RunConfig(method="grpo", dataset=str(plain), rewards=["length"], reward_max_words=20))
