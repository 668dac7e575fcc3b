"""Datasets as people share them (tests/data/wild/, one small file per class, written for these tests): each is
detected, converted or refused with one line, never trained on silently. `expected.json` holds, per file, the
detected format, rows read and kept, the report's conversion notes and dropped rows, or the refusal."""

import json
from pathlib import Path

import pytest

from clitools import cli

from ftspace.data import formats, load_dataset, messages
from ftspace.data.inspection import inspect_dataset
from ftspace.errors import DataError

ROOT = Path(__file__).resolve().parent.parent
WILD = ROOT / "tests" / "data" / "wild"
EXPECTED = json.loads((WILD / "expected.json").read_text())
WINDOW = 64  # max_seq_length of these checks: short, so the text files need several windows
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def call(city: str) -> dict:
    return {"type": "function", "function": {"name": "get_weather", "arguments": {"city": city}}}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_file_is_detected_converted_or_refused(name):
    want = EXPECTED[name]
    if "refused" in want:
        with pytest.raises(DataError) as e:
            inspect_dataset(str(WILD / name), max_seq_length=WINDOW)
        assert str(e.value) == want["refused"] and "\n" not in str(e.value)
        assert "ftspace trains text models only" in str(e.value)
        return
    report = inspect_dataset(str(WILD / name), max_seq_length=WINDOW)["report"]
    assert report["format"] == want["format"]
    assert (report["rows_read"], report["rows_kept"]) == (want["rows_read"], want["rows_kept"])
    assert report["notes"] == want["notes"]
    assert [[d["row"], d["field"], d["reason"]] for d in report["dropped"]] == want["dropped"]
    assert report["layout"] == want.get("layout", "")
    if "windows" in want:
        assert (report["tokens"]["windows"], report["tokens"]["documents"]) == (want["windows"], want["documents"])
        assert report["tokens"]["max"] <= WINDOW and report["tokens"]["over_max_seq_length"] == 0


def test_every_class_the_issue_names_has_a_file():
    formats_seen = {v.get("format", "refused") for v in EXPECTED.values()}
    assert {"messages", "sharegpt", "text", "preference", "kto", "function_calls", "prompts", "refused"} <= formats_seen
    notes = {n for v in EXPECTED.values() for n in v.get("notes", {})}
    assert {messages.NOTE_BLOCKS, messages.NOTE_REASONING_DROPPED, messages.NOTE_EMPTY_REASONING, messages.NOTE_TAGS,
            messages.NOTE_SYSTEM_TOOLS, messages.NOTE_ENCODED_ARGS, messages.NOTE_WEIGHT, formats.NOTE_CHOSEN,
            messages.NOTE_TOOL_BLOCKS, formats.NOTE_PROMPTS} <= notes
    layouts = {v.get("layout") for v in EXPECTED.values()} - {None}
    assert layouts == {"documents separated by blank lines", "one document per line", "one document"}


def test_content_blocks_are_joined_and_reasoning_is_kept_apart():
    rows, _ = load_dataset(str(WILD / "blocks_openai.jsonl"))
    assert rows[0]["messages"][1] == {"role": "assistant", "content": "It is 4."}
    assert rows[1]["messages"][2] == {"role": "assistant", "content": "Lima.",
                                      "reasoning_content": "Peru's capital is Lima."}
    assert rows[2]["messages"][1] == {"role": "assistant", "content": "Hi!"}  # the empty thinking block dropped
    rows, _ = load_dataset(str(WILD / "blocks_value.jsonl"))
    assert [r["messages"][1]["content"] for r in rows] == ["Red.", "Blue.", "Green."]
    rows, _ = load_dataset(str(WILD / "reasoning_fields.jsonl"))
    assert [r["messages"][1].get("reasoning_content") for r in rows] == ["3 times 3 is 9.", "5 minus 2 is 3.", None]


def test_reasoning_reaches_a_template_that_renders_it_and_is_trained(smol_tokenizer):
    from ftspace.data.tokenize import for_template, supports_reasoning, tokenize_example

    rows, _ = load_dataset(str(WILD / "reasoning_fields.jsonl"))
    assert not supports_reasoning(smol_tokenizer)
    assert "reasoning_content" not in for_template(smol_tokenizer, rows[0]["messages"])[1]
    thinking = smol_tokenizer.__class__.from_pretrained(smol_tokenizer.name_or_path)
    thinking.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.reasoning_content %}<think>{{ m.reasoning_content }}"
        "</think>{% endif %}{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
        "{% endif %}")
    assert supports_reasoning(thinking)
    encoded = tokenize_example(thinking, rows[0])
    trained = thinking.decode([t for t, m in zip(encoded["input_ids"], encoded["assistant_masks"]) if m])
    assert trained == "<think>3 times 3 is 9.</think>9<|im_end|>\n"


@pytest.mark.parametrize("name, first_city", [("tools_openai.jsonl", "Oslo"), ("tools_sharegpt.jsonl", "Paris"),
                                              ("tools_hermes.jsonl", "Bern"), ("tools_hf_tutorial.jsonl", "Accra"),
                                              ("tools_blocks_value.jsonl", "Quito"), ("tools_anthropic.jsonl", "Cairo"),
                                              ("tools_function_call_blocks.jsonl", "Seoul")])
def test_tool_call_dialects_become_canonical_tool_calls_with_tools(name, first_city):
    rows, _ = load_dataset(str(WILD / name))
    first = rows[0]
    assert first["tools"][0]["function"]["name"] == "get_weather"
    roles = [m["role"] for m in first["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant"], roles  # a Hermes system prompt became `tools`
    calls = [{k: v for k, v in c.items() if k != "id"} for c in first["messages"][1]["tool_calls"]]
    assert calls == [call(first_city)]
    assert "<tool_call>" not in first["messages"][1]["content"]
    assert "<tool_response>" not in first["messages"][2]["content"]
    if name in ("tools_openai.jsonl", "tools_anthropic.jsonl", "tools_function_call_blocks.jsonl"):
        assert first["tools"] == [WEATHER]  # Anthropic's input_schema, Gemini's function_declarations: the same
    if name == "tools_openai.jsonl":  # arguments encoded twice: decoded to the same object
        assert rows[1]["messages"][1]["tool_calls"][0]["function"]["arguments"] == {"city": "Lima"}
    if name == "tools_hf_tutorial.jsonl":  # the tutorial's <think> text stays the model's visible text
        assert first["messages"][1]["content"] == "<think>I should call get_weather for Accra.</think>"


def test_tool_blocks_become_calls_and_tool_turns_in_order(smol_tokenizer):
    """Tool calls and results written as content blocks (a chat export's {"type": "tool_call", "value": json},
    Anthropic's tool_use/tool_result in the user's turn, Responses' function_call/function_call_output, Gemini's
    functionCall/functionResponse parts): calls on the assistant's turn, each result a tool turn of its own (named
    after its call), the reasoning kept apart, the text that follows results a user turn; and the rows train."""
    from ftspace.data.tokenize import tokenize_example

    rows, _ = load_dataset(str(WILD / "tools_blocks_value.jsonl"))
    assert rows[0]["messages"][1]["reasoning_content"] == "The user wants Quito's weather; call get_weather."
    assert [c["function"]["arguments"] for c in rows[1]["messages"][1]["tool_calls"]] == [{"city": "Hanoi"},
                                                                                        {"city": "Perth"}]
    rows, _ = load_dataset(str(WILD / "tools_anthropic.jsonl"))
    second = rows[1]["messages"]
    assert [(m["role"], m.get("tool_call_id"), m.get("name")) for m in second] == [
        ("user", None, None), ("assistant", None, None), ("tool", "toolu_02", "get_weather"),
        ("tool", "toolu_03", "get_weather"), ("user", None, None), ("assistant", None, None)]
    assert second[1]["content"] == "Checking both." and [c["id"] for c in second[1]["tool_calls"]] == ["toolu_02",
                                                                                                   "toolu_03"]
    assert [m["content"] for m in second[2:5]] == ['{"temp": 29}', '{"temp": 17}', "Answer in one line."]
    assert second[5] == {"role": "assistant", "content": "Lagos 29, Rome 17."}  # the redacted block skipped
    rows, _ = load_dataset(str(WILD / "tools_function_call_blocks.jsonl"))
    gemini = rows[1]["messages"]
    assert gemini[1]["tool_calls"] == [call("Lisbon")]
    assert gemini[2] == {"role": "tool", "content": '{"temp": 21}', "name": "get_weather"}
    encoded = tokenize_example(smol_tokenizer, rows[0])
    trained = smol_tokenizer.decode([t for t, m in zip(encoded["input_ids"], encoded["assistant_masks"]) if m])
    assert "Seoul" in trained and "8 degrees in Seoul." in trained


@pytest.mark.parametrize("blocks, role, field, reason", [
    ([{"type": "tool_result", "tool_use_id": "t", "content": "1"}], "assistant", "messages[1].content[0]",
     "tool_result block in the assistant's turn"),
    ([{"type": "tool_call", "value": "not json"}], "assistant", "messages[1].content[0]",
     "malformed tool call block"),
    ([{"type": "tool_use", "id": "t", "name": "", "input": {}}], "assistant",
     "messages[1].tool_calls[0].function.name", "missing function name"),
    ([{"type": "tool_use", "id": "t", "name": "f", "input": {}}], "system", "messages[0].content[0]",
     "only the assistant's turns call tools"),
])
def test_tool_blocks_in_the_wrong_place_are_refused_by_field(blocks, role, field, reason):
    turns = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    if role == "system":
        turns.insert(0, {"role": "system", "content": blocks})
    else:
        turns[1] = {"role": role, "content": blocks}
    with pytest.raises(messages.RowError) as e:
        messages.validate({"messages": turns})
    assert e.value.field == field and reason in e.value.reason


def test_loss_weight_zero_turns_are_shown_but_not_trained(smol_tokenizer):
    from ftspace.data.tokenize import tokenize_example

    rows, _ = load_dataset(str(WILD / "loss_weights.jsonl"))
    for row, skipped, learned in ((rows[0], "Wrong answer first.", "The good answer."),
                                  (rows[1], "Skip me.", "Learn me.")):
        encoded = tokenize_example(smol_tokenizer, row)
        trained = smol_tokenizer.decode([t for t, m in zip(encoded["input_ids"], encoded["assistant_masks"]) if m])
        everything = smol_tokenizer.decode(encoded["input_ids"])
        assert skipped in everything and skipped not in trained
        assert trained == learned + "<|im_end|>\n"


def test_text_windows_cover_a_long_document_with_a_stride(smol_tokenizer):
    from ftspace.data.tokenize import encode, text_windows

    rows, _ = load_dataset(str(WILD / "corpus_document.txt"))
    assert len(rows) == 1 and len(rows[0]["text"]) > 8000  # one hard-wrapped document, not refused for length
    ids = smol_tokenizer(rows[0]["text"], add_special_tokens=False)["input_ids"] + [smol_tokenizer.eos_token_id]
    plain = encode(smol_tokenizer, rows[0], max_length=WINDOW)
    assert [w["input_ids"] for w in plain] == text_windows(ids, WINDOW)
    assert sum(len(w["input_ids"]) for w in plain) == len(ids)  # every token once
    strided = encode(smol_tokenizer, rows[0], max_length=WINDOW, stride=16)
    assert len(strided) > len(plain)
    assert strided[1]["input_ids"][:16] == strided[0]["input_ids"][-16:]  # each window repeats 16 tokens


def test_a_text_corpus_run_trains_on_windows(tiny_model, runs_dir):
    from ftspace import runs
    from ftspace.config import RunConfig
    from ftspace.engine.prepare import prepare

    run = runs.create(RunConfig(model_name=str(tiny_model), dataset=str(WILD / "corpus_document.txt"),
                                max_seq_length=WINDOW, text_stride=8))
    info = prepare(run, None, log=lambda *_: None)
    from ftspace.engine.prepare import open_tokenized, prepared_dir

    train = open_tokenized(prepared_dir(run), info["train_files"])
    report = inspect_dataset(str(WILD / "corpus_document.txt"), model_name=str(tiny_model), max_seq_length=WINDOW,
                             text_stride=8)["report"]
    assert train.num_rows == report["tokens"]["windows"] > 1
    assert max(len(ids) for ids in train["input_ids"]) == WINDOW
    assert "read as one document" in info["data"]

    from ftspace.planning import describe, plan  # the estimate counts windows too (from characters per token)

    est = plan(run.config().to_dict())
    assert abs(est["train_rows"] - train.num_rows) <= max(1, train.num_rows // 10), (est, train.num_rows)
    assert "training windows of text" in describe(est)
    assert "optimizer steps**: a small dataset learns little" in describe(est)  # 5 steps of one epoch


def test_preference_rows_keep_prompt_chosen_and_rejected_for_preference_methods():
    rows, report = load_dataset(str(WILD / "preference_sharegpt.json"), method="dpo")
    assert report.format == "preference" and not report.notes
    assert rows[0] == {"prompt": [{"role": "user", "content": "Recommend a book."}],
                       "chosen": [{"role": "assistant", "content": "Try 'The Hobbit'."}],
                       "rejected": [{"role": "assistant", "content": "No."}]}
    rows, _ = load_dataset(str(WILD / "preference_hh.jsonl"), method="dpo")
    assert rows[0]["prompt"] == [{"role": "user", "content": "How do I boil an egg?"}]
    assert rows[0]["rejected"] == [{"role": "assistant", "content": "Figure it out."}]
    assert rows[1]["prompt"] == [{"role": "user", "content": "Is the sky blue?"}]  # the shared turns
    rows, _ = load_dataset(str(WILD / "preference_messages.jsonl"), method="orpo")
    assert rows[1]["prompt"][0] == {"role": "system", "content": "Be kind."}
    with pytest.raises(DataError, match="method dpo learns from preference rows"):
        load_dataset(str(WILD / "kto.jsonl"), method="dpo")


def test_kto_rows_are_never_all_learned_as_good():
    rows, report = load_dataset(str(WILD / "kto.jsonl"))
    assert [r["messages"][1]["content"] for r in rows] == ["Rome.", "7", "Green."]
    assert report.rows_dropped == 2 and "2 dropped" in report.summary()
    assert "undesirable reply (KTO data)" in report.summary()
    rows, report = load_dataset(str(WILD / "kto_messages_tag.jsonl"))  # LLaMA-Factory's kto_tag
    assert [r["messages"][1]["content"] for r in rows] == ["Hello! How can I help?"]


def test_function_call_rows_and_preference_prompts_under_other_names():
    rows, _ = load_dataset(str(WILD / "tools_xlam.jsonl"))
    assert [c["function"]["arguments"]["city"] for c in rows[1]["messages"][1]["tool_calls"]] == ["Lima", "Quito"]
    assert rows[0]["tools"] == [WEATHER]
    rows, _ = load_dataset(str(WILD / "preference_question_system.jsonl"), method="dpo")
    assert rows[0]["prompt"] == [{"role": "system", "content": "You are terse."},
                                 {"role": "user", "content": "Boiling point of water?"}]
    assert rows[1]["prompt"] == [{"role": "user", "content": "Colour of snow?"}]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_data_inspect_prints_the_format_and_numbers(name):
    """`ftspace data inspect` on every file, in this process (tests/test_cli.py runs the command as a process)."""
    want = EXPECTED[name]
    out = cli("data", "inspect", WILD / name, "--json", "--max-seq-length", WINDOW)
    if "refused" in want:
        assert out.returncode != 0
        assert out.stderr.strip().splitlines()[-1].endswith(want["refused"])
        return
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout)
    assert (got["format"], got["rows_read"], got["rows_kept"], got["notes"]) == \
        (want["format"], want["rows_read"], want["rows_kept"], want["notes"])
    assert [[d["row"], d["field"], d["reason"]] for d in got["dropped"]] == want["dropped"]
    if name not in ("corpus_document.txt", "tools_hermes.jsonl", "preference_strings.jsonl"):
        return  # the readable report (the same report, printed) checked on one file of each kind
    text = cli("data", "inspect", WILD / name, "--max-seq-length", WINDOW).stdout
    assert text.startswith(f"{name}: format {want['format']}, {want['rows_read']} rows read, {want['rows_kept']} kept")
    for note, count in want["notes"].items():
        assert f"{count} {note}" in text
    for row, field, reason in want["dropped"]:
        assert f"row {row}: {field}: {reason}" in text
    if "windows" in want:
        plural = "s" if want["documents"] != 1 else ""
        assert f"{want['windows']} windows of at most {WINDOW} tokens from {want['documents']} document{plural} " in text


def test_a_tool_result_given_as_an_object_becomes_json_text():
    row = messages.validate({"messages": [{"role": "user", "content": "Weather?"},
                                         {"role": "assistant", "content": None, "tool_calls": [call("Oslo")]},
                                         {"role": "tool", "content": {"temp": 3}},
                                         {"role": "assistant", "content": "3 degrees."}]})
    assert row["messages"][2] == {"role": "tool", "content": '{"temp": 3}'}


def test_the_run_log_says_the_reasoning_was_dropped(tiny_model, runs_dir):
    from ftspace import runs
    from ftspace.config import RunConfig
    from ftspace.engine.prepare import prepare

    run = runs.create(RunConfig(model_name=str(tiny_model), dataset=str(WILD / "reasoning_fields.jsonl")))
    info = prepare(run, None, log=lambda *_: None)
    assert f"2 {messages.NOTE_REASONING_DROPPED}" in info["data"]
