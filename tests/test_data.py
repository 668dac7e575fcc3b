"""Detection and conversion for every format, and the malformed cases with their row numbers."""

import json

import pytest

from ftspace.data import load_dataset, split
from ftspace.errors import DataError

USER, BOT = "What is 2+2?", "4"
EXPECTED = [{"role": "user", "content": USER}, {"role": "assistant", "content": BOT}]


def jsonl(*rows):
    return "".join(json.dumps(r) + "\n" for r in rows)


FORMATS = {
    "alpaca": ("a.jsonl", jsonl({"instruction": USER, "input": "", "output": BOT}), "alpaca", EXPECTED),
    "alpaca_input_system": ("a.jsonl", jsonl({"instruction": "Add", "input": "2+2", "output": BOT, "system": "Be brief"}),
                            "alpaca", [{"role": "system", "content": "Be brief"},
                                       {"role": "user", "content": "Add\n\n2+2"}, {"role": "assistant", "content": BOT}]),
    "sharegpt": ("s.jsonl", jsonl({"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": USER},
                                                     {"from": "gpt", "value": BOT}]}), "sharegpt",
                 [{"role": "system", "content": "S"}] + EXPECTED),
    "messages": ("m.jsonl", jsonl({"messages": EXPECTED}), "messages", EXPECTED),
    "prompt_completion": ("p.jsonl", jsonl({"prompt": USER, "completion": BOT}), "prompt_completion", EXPECTED),
    "prompt_completion_lists": ("p.jsonl", jsonl({"prompt": [EXPECTED[0]], "completion": [EXPECTED[1]]}),
                                "prompt_completion", EXPECTED),
    "question_answer_csv": ("qa.csv", f'question,answer\n"{USER}",{BOT}\n', "pairs", EXPECTED),
    "prompt_response_tsv": ("pr.tsv", f"prompt\tresponse\n{USER}\t{BOT}\n", "pairs", EXPECTED),
    "input_output_json": ("io.json", json.dumps([{"input": USER, "output": BOT}]), "pairs", EXPECTED),
    "query_response_wrapped_json": ("qr.json", json.dumps({"data": [{"query": USER, "response": BOT}]}), "pairs",
                                    EXPECTED),
}


@pytest.mark.parametrize("case", FORMATS, ids=list(FORMATS))
def test_detect_and_convert(case, write):
    name, content, fmt, messages = FORMATS[case]
    rows, report = load_dataset(str(write(name, content)))
    assert report.format == fmt
    assert rows[0]["messages"] == messages
    assert (report.rows_read, report.rows_kept, report.rows_dropped) == (1, 1, 0)


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"messages": [EXPECTED, EXPECTED]}), path)
    rows, report = load_dataset(str(path))
    assert report.format == "messages" and rows[1]["messages"] == EXPECTED


def test_plain_text_is_split_into_documents(write):
    rows, report = load_dataset(str(write("corpus.txt", "First doc line 1\nline 2\n\n\nSecond doc\n")))
    assert report.format == "text"
    assert rows == [{"text": "First doc line 1\nline 2"}, {"text": "Second doc"}]


def test_tools_and_tool_calls(write):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    row = {"messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "content": '{"temp": 3}'},
        {"role": "assistant", "content": "3 degrees."}], "tools": json.dumps(tools)}
    rows, _ = load_dataset(str(write("t.jsonl", jsonl(row))))
    call = rows[0]["messages"][1]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": {"city": "Oslo"}}  # JSON string parsed
    assert rows[0]["messages"][1]["content"] == ""
    assert rows[0]["tools"][0]["function"]["name"] == "get_weather"


def test_explicit_column_mapping(write):
    path = write("x.csv", "frage,antwort,notes\nWie?,So.,x\n")
    with pytest.raises(DataError, match="cannot tell the format"):
        load_dataset(str(path))
    rows, report = load_dataset(str(path), prompt_column="frage", response_column="antwort")
    assert report.format == "columns"
    assert rows[0]["messages"] == [{"role": "user", "content": "Wie?"}, {"role": "assistant", "content": "So."}]
    with pytest.raises(DataError, match="column 'answer' not found"):
        load_dataset(str(path), prompt_column="frage", response_column="answer")


def test_format_override(write):
    path = write("q.jsonl", jsonl({"text": "hello", "question": USER, "answer": BOT}))
    assert load_dataset(str(path))[1].format == "pairs"
    assert load_dataset(str(path), dataset_format="text")[0] == [{"text": "hello"}]


DROPS = [
    ({"instruction": USER, "output": ""}, "output", "empty text"),
    ({"instruction": USER, "output": None}, "output", "null value"),
    ({"instruction": USER, "output": 4}, "output", "must be text"),
    ({"instruction": USER}, "output", "column missing"),
]


def test_dropped_rows_are_reported_with_row_numbers(write):
    good = {"instruction": USER, "output": BOT}
    path = write("a.jsonl", jsonl(good, *[d[0] for d in DROPS], good))
    rows, report = load_dataset(str(path))
    assert (report.rows_read, report.rows_kept, report.rows_dropped) == (6, 2, 4)
    assert [(d["row"], d["field"]) for d in report.dropped] == [(i + 2, d[1]) for i, d in enumerate(DROPS)]
    for dropped, (_, _, reason) in zip(report.dropped, DROPS):
        assert reason in dropped["reason"]
    assert "row 2: output: empty text" in report.summary()


CONVERSATION_DROPS = [
    ([{"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"}], "messages[0].role", "must start with user"),
    ([{"role": "user", "content": "x"}, {"role": "wizard", "content": "y"}], "messages[1].role", "unknown role"),
    ([{"role": "user", "content": "x"}, {"role": "assistant", "content": [{"type": "hologram", "text": "a"}]}],
     "messages[1].content[0].type", "unknown content block type"),
    ([{"role": "user", "content": "x"}, {"role": "assistant", "content": {"a": 1}}], "messages[1].content[0]",
     "needs a type"),
    ([{"role": "user", "content": "x"}, {"role": "assistant", "content": 7}], "messages[1].content", "must be text"),
    ([{"role": "user", "content": "x"}, {"role": "assistant", "content": "  "}], "messages[1].content", "empty response"),
    ([{"role": "user", "content": "x"}], "messages", "no assistant reply"),
    ([{"role": "user", "content": "x"}, {"role": "assistant", "content": None, "tool_calls": [
        {"function": {"name": "f", "arguments": "{oops"}}]}], "messages[1].tool_calls[0].function.arguments",
     "malformed tool call"),
    ([{"role": "user", "content": "x"}, {"role": "assistant", "content": "", "tool_calls": [{"function": {}}]}],
     "messages[1].tool_calls[0].function.name", "malformed tool call"),
]


@pytest.mark.parametrize("messages, field, reason", CONVERSATION_DROPS)
def test_bad_conversations_are_dropped_with_field_and_reason(messages, field, reason, write):
    path = write("m.jsonl", jsonl({"messages": EXPECTED}, {"messages": messages}))
    _, report = load_dataset(str(path))
    assert report.dropped == [{"row": 2, "field": field, "reason": report.dropped[0]["reason"]}]
    assert reason in report.dropped[0]["reason"]


def test_sharegpt_unknown_role(write):
    path = write("s.jsonl", jsonl({"conversations": [{"from": "human", "value": "x"}, {"from": "gpt", "value": "y"}]},
                                  {"conversations": [{"from": "alien", "value": "x"}]}))
    _, report = load_dataset(str(path))
    assert report.dropped[0]["row"] == 2 and report.dropped[0]["field"] == "conversations[0].from"


@pytest.mark.parametrize("name, content, message", [
    ("empty.jsonl", "", "empty.jsonl: the file is empty"),
    ("trunc.jsonl", jsonl({"prompt": "a", "completion": "b"}) + '{"prompt": "a", "compl', "trunc.jsonl: row 2: not valid JSON"),
    ("obj.json", json.dumps({"a": 1, "b": 2}), "obj.json: a JSON object, not a list of rows"),
    ("bin.jsonl", b"\x00\x01\x02binary", "bin.jsonl: contains binary data"),
    ("latin.csv", "question,answer\nCaf\xe9?,Oui\n".encode("latin-1"), "latin.csv: row 1: not UTF-8"),
    ("quotes.csv", 'question,answer\n"open quote,never closed\nx,y\n', "quotes.csv: row"),
    ("ragged.csv", "question,answer\na,b,c\n", "ragged.csv: row 1: 3 fields where the header has 2"),
    ("zip.csv", b"PK\x03\x04rest-of-a-zip", "zip.csv: is a zip archive"),
    ("cols.jsonl", jsonl({"foo": 1, "bar": 2}), "cols.jsonl: cannot tell the format from the columns ['foo', 'bar']"),
    ("allbad.jsonl", jsonl({"instruction": "x", "output": ""}), "allbad.jsonl: no usable rows (1 read as alpaca); row 1: output: empty text"),
    ("data.xlsx", "x", "data.xlsx: unsupported file type"),
    ("arr.jsonl", "[1, 2]\n", "arr.jsonl: row 1: expected a JSON object"),
])
def test_unusable_files_fail_with_one_clear_line(name, content, message, write):
    with pytest.raises(DataError) as e:
        load_dataset(str(write(name, content)))
    assert message in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("source, message", [
    ("missing/data.jsonl", "file not found"),
    ("../../no/such/dir/x.jsonl", "file not found"),
    ("/etc/passwd", "unsupported file type"),
    ("owner/../secret", "neither a file nor a valid Hub dataset id"),
    ("example:nope", "No bundled example 'nope'"),
])
def test_bad_sources(source, message):
    with pytest.raises(DataError, match=message):
        load_dataset(source)


def test_hub_dataset_offline_is_a_clear_error():
    with pytest.raises(DataError, match="Hub dataset someone/dataset"):
        load_dataset("someone/dataset")


@pytest.mark.parametrize("name, fmt", [("alpaca", "alpaca"), ("chat", "messages"), ("tools", "messages"),
                                       ("corpus", "text"), ("facts", "pairs")])
def test_bundled_examples(name, fmt):
    rows, report = load_dataset(f"example:{name}")
    assert report.format == fmt and report.rows_dropped == 0 and len(rows) >= 7


def test_split_sizes_and_zero():
    rows = [{"text": str(i)} for i in range(10)]
    assert split(rows, 0, 1) == (rows, [])
    train, valid = split(rows, 0.2, 1)
    assert len(train) == 8 and len(valid) == 2 and not set(map(str, train)) & set(map(str, valid))
    assert len(split(rows, 3, 1)[1]) == 3
    assert split(rows, 0.2, 1) == split(rows, 0.2, 1)
    with pytest.raises(DataError, match="leaves no training rows"):
        split(rows, 10, 1)
