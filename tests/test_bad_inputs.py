"""The bad-input corpus (tests/data/bad/ plus three generated giants): every file is refused with one
line naming the file (and row and field where they apply), in bounded time, by the CLI and the app,
and the app keeps serving."""

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from apptools import ROOT, App
from ftspace.config import DATA_SUFFIXES

BAD = sorted((ROOT / "tests" / "data" / "bad").iterdir())
# The whole line each file gets: the file, the row and field where they apply, and what to do. ('*' stands
# for a library's own words.)
EXPECTED = json.loads((ROOT / "tests" / "data" / "bad_expected.json").read_text())


def test_the_corpus_is_big_enough():
    assert len(BAD) >= 25 and sorted(EXPECTED) == [p.name for p in BAD]


@pytest.fixture(scope="module")
def giants(tmp_path_factory):
    """Files too big to commit: a 30 MB single field, a million short rows, one over the upload limit."""
    tmp = tmp_path_factory.mktemp("giants")
    huge = tmp / "huge_field.jsonl"
    huge.write_text(json.dumps({"instruction": "Summarise", "output": "x" * (30 * 2**20)}) + "\n")
    million = tmp / "million_rows.jsonl"
    million.write_text('{"instruction": "x", "output": ""}\n' * 1_000_000)
    over = tmp / "over_limit.jsonl"
    over.write_text('{"instruction": "hi", "output": "hello"}\n' * 60_000)  # ~2.4 MB, over a 1 MB limit
    return {"huge": huge, "million": million, "over": over}


def inspect(path, timeout=120):
    """`ftspace data inspect PATH`, bounded in time; `.peak_mb` is the CLI process's own peak resident memory
    (bench/peak.py reads it from /proc inside the process: wait4's ru_maxrss would start at pytest's peak)."""
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak.json"
        try:
            result = subprocess.run([sys.executable, "bench/peak.py", str(peak_file), "-m", "ftspace", "data",
                                     "inspect", str(path), "--no-tokens"], cwd=ROOT, capture_output=True, text=True,
                                    stdin=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{path}: still running after {timeout} s") from None
        result.peak_mb = json.loads(peak_file.read_text())["peak_mb"]
    return result


def one_line(result, expected):
    """Exit 2, nothing on stdout, and exactly `error: EXPECTED` on stderr ('*' matches a library's words)."""
    lines = result.stderr.strip().splitlines()
    pattern = "error: " + ".*".join(map(re.escape, expected.split("*"))) + "$"
    return result.returncode == 2 and not result.stdout and len(lines) == 1 and re.match(pattern, lines[0])


@pytest.mark.parametrize("path", BAD, ids=[p.name for p in BAD])
def test_cli_refuses_with_one_line(path):
    result = inspect(path, timeout=60)
    assert one_line(result, EXPECTED[path.name]), result.stderr[-2000:]


def test_cli_refuses_the_giants_in_bounded_time_and_memory(giants):
    baseline = inspect(ROOT / "examples" / "facts.jsonl")  # the CLI reading 32 good rows
    assert baseline.returncode == 0, baseline.stderr
    huge = inspect(giants["huge"])
    assert one_line(huge, "huge_field.jsonl: no usable rows (1 read as alpaca); row 1: output: 31,457,280 characters, "
                          "over the 1,000,000 limit*")
    million = inspect(giants["million"])
    assert one_line(million, "million_rows.jsonl: no usable rows (1000000 "
                    "read as alpaca); row 1: output: empty text. Check the format or the column mapping.")
    # The bound RELIABILITY.md states: rows are streamed, so a million of them (36 MB) cost nothing beyond
    # the CLI's own baseline; one row is read and parsed whole, so the 30 MB field costs about twice its
    # size, and no more. (This is the CLI's own memory: the figure moves by the field's size.)
    field_mb = 30
    assert million.peak_mb < baseline.peak_mb + 10, (baseline.peak_mb, million.peak_mb)
    assert baseline.peak_mb + field_mb < huge.peak_mb < baseline.peak_mb + 3 * field_mb, \
        (baseline.peak_mb, huge.peak_mb)


def test_hub_ids_with_path_tricks():
    for source in ("owner/../secret", "../../etc/x", "a/b/c"):
        result = inspect(source)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from gradio_client import Client

    with App(tmp_path_factory.mktemp("badapp"), FTSPACE_UPLOAD_LIMIT_MB="1") as served:
        yield served, Client(served.url, verbose=False)


def test_app_refuses_every_bad_file_and_keeps_serving(app, giants):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    served, client = app
    for path in BAD:
        try:
            stored = client.predict(handle_file(str(path)), "", api_name="/upload")
            client.predict("", stored, "auto", "", "", "default", 256, api_name="/check")
        except AppError as e:
            if path.suffix in DATA_SUFFIXES:  # the handler's refusal: the very line the CLI gives ('*': a library's words)
                pattern = ".*".join(map(re.escape, EXPECTED[path.name].split("*")))
                assert re.search(pattern, str(e)) and "\n" not in str(e), (path.name, str(e))
            else:  # a type the upload field does not take: Gradio refuses it before the handler runs
                assert "Invalid file type" in str(e), (path.name, str(e))
        else:
            pytest.fail(f"{path.name} was accepted")
        assert served.alive()
    # Gradio enforces the upload limit before the file leaves the client; our handler checks again.
    with pytest.raises((AppError, ValueError), match="over the 1 MB upload limit|exceeds the maximum file size"):
        client.predict(handle_file(str(giants["over"])), "", api_name="/upload")
    for source in ("owner/../secret", "../x"):
        with pytest.raises(AppError):
            client.predict("", source, "auto", "", "", "default", 256, "", "train", api_name="/inspect_hub")
    assert client.predict("", api_name="/runs") is not None and served.alive()


def test_upload_handler_names_the_limit(giants):
    import gradio as gr

    from ftspace.ui import dataset_tab

    with pytest.raises(gr.Error, match="huge_field.jsonl: 30 MB is over the 1 MB upload limit"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(dataset_tab, "UPLOAD_LIMIT_MB", 1)
            dataset_tab.accept_upload(str(giants["huge"]))
