"""The app through its own API: gradio_client drives the whole journey against `python app.py`."""

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from apptools import ROOT, App, files_containing
from fakehub import FakeHub
from ftspace.config import PRESETS, GenerationSettings, RunConfig
from ftspace.ui.chat_tab import text_of

TOKEN = "hf_app_secret_token_987654"
HEAVY = ("torch", "transformers", "peft", "trl", "unsloth")


def test_building_the_ui_imports_nothing_heavy():
    code = "import json, sys; import app; print(json.dumps([m for m in %r if m in sys.modules]))" % (HEAVY,)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "FTSPACE_RUNS": "/nonexistent-ftspace-runs"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_readme_has_space_front_matter():
    front = yaml.safe_load((ROOT / "README.md").read_text().split("---")[1])
    assert front["sdk"] == "gradio" and front["app_file"] == "app.py" and front["hf_oauth"] is True
    assert {"write-repos", "manage-repos", "inference-api", "jobs"} <= set(front["hf_oauth_scopes"])  # the 'hf' teacher
    import gradio

    assert front["sdk_version"] == gradio.__version__ and front["short_description"]
    # what a Space needs to start well: ZeroGPU suggested to whoever duplicates it, the catalogue's small models
    # linked and the first GPU picks downloaded at build time (the Hub allows 10), every one in the catalogue
    from huggingface_hub import SpaceHardware

    from ftspace.models import CATALOGUE, hub_id_for

    assert front["suggested_hardware"] == SpaceHardware.ZERO_A10G
    catalogue = {hub_id_for(e.model_id) for e in CATALOGUE}
    assert set(front["models"]) <= catalogue and 0 < len(front["preload_from_hub"]) <= 10
    assert {entry.split()[0] for entry in front["preload_from_hub"]} <= set(front["models"])


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model):
    tmp = tmp_path_factory.mktemp("app")
    with FakeHub(token=TOKEN) as fake, App(tmp, HF_ENDPOINT=fake.url, HF_HUB_OFFLINE="0", HF_DATASETS_OFFLINE="0") as app:
        from gradio_client import Client

        yield app, Client(app.url, verbose=False), fake, tmp


def value_of(output):
    """gradio_client hands back component updates as dicts; the value is what we asked for."""
    return output["value"] if isinstance(output, dict) and output.get("__type__") == "update" else output


def run_values(**overrides):
    values = RunConfig().to_dict()
    values.update(PRESETS["quick demo"])
    values.update(overrides)
    values["target_modules"] = ",".join(values["target_modules"])
    values["rewards"] = ",".join(values["rewards"])
    return [values[f.name] for f in fields(RunConfig)]


def test_whole_journey(served, tiny_model, tmp_path):
    from gradio_client import handle_file

    app, client, fake, tmp = served
    # 1. upload a bundled example; the app keeps a copy and reports on it
    path = client.predict(handle_file(str(ROOT / "examples" / "facts.jsonl")), "", api_name="/upload")
    assert path == "facts.jsonl (uploaded)"  # by its name, never where the server keeps it
    assert [p.name for p in (tmp / "uploads").rglob("facts.jsonl")] == ["facts.jsonl"]
    summary, hist, masked, preview, dropped, dataset, *_ = client.predict(
        "", path, "auto", "", "", str(tiny_model), 256, api_name="/check")
    assert "format **pairs**" in summary and "32 kept" in summary and dataset == path
    trained = "".join(t["token"] for t in masked if t["class_or_confidence"] == "trained")
    untrained = "".join(t["token"] for t in masked if t["class_or_confidence"] != "trained")
    assert trained == "The capital of Zorblax is Quillhaven.<|im_end|>\n"
    assert "What is the capital of Zorblax?" in untrained
    assert preview[0]["messages"][1]["content"] == "The capital of Zorblax is Quillhaven."

    # 2. quick preset on a tiny model
    run_id, _ = client.predict("", *run_values(model_name=str(tiny_model), dataset=path, max_steps=8, test_size=4,
                                               save_steps=4, max_seq_length=128), api_name="/start")
    run_id = value_of(run_id)
    assert run_id.startswith("20")

    # 3. events stream in while it trains
    seen_steps, status = set(), ""
    deadline = time.time() + 300
    while time.time() < deadline:
        status, plot, log, _ = client.predict("", run_id, api_name="/progress")
        if plot and plot.get("data"):
            seen_steps.add(len(plot["data"]))
        if "**completed**" in status or "**failed**" in status:
            break
        time.sleep(0.3)
    assert "**completed**" in status, status + app.log.read_text()[-2000:]
    assert "step 8/8" in status and "`" + "█" * 20 + "` 100%" in status and "loss" in status
    assert re.search(r"trained in (\d+ min )?\d+ s", status), status  # the training time, from the run's status
    from ftspace.models import cpu_bf16_units

    assert f"computing in {'bfloat16' if cpu_bf16_units() else 'float32'} on CPU" in status
    assert max(seen_steps) >= 8 and len(seen_steps) >= 2, seen_steps  # the curve grew while we watched
    # The log panel: ftspace's own lines (loading, data, steps, the saved adapter); what libraries print (torch's
    # warnings, Unsloth's banner, progress bars) stays in the run's log file.
    lines = log.splitlines()
    assert lines and all(line.startswith("[ftspace") for line in lines), log
    assert any("step 8/8" in line for line in lines) and any("adapter saved" in line for line in lines)
    [log_file] = [p for p in tmp.rglob("log.txt") if p.parent.name == run_id]
    library = [line for line in log_file.read_text().splitlines()
               if "Unsloth" in line and not line.startswith("[ftspace")]
    assert library and not any(line in log for line in library), library  # Unsloth's own lines: in the file only
    assert str(tmp) not in log  # folders on the server are not shown

    # 4. chat is ready before the first message: the Train tab saw the run complete and its model loaded in the
    # background; picking the run in the Chat tab says so; the message then loads nothing
    deadline = time.time() + 120
    while f"run {run_id} loaded in the background" not in app.log.read_text() and time.time() < deadline:
        time.sleep(0.2)
    assert f"run {run_id} loaded in the background" in app.log.read_text(), app.log.read_text()[-2000:]
    assert client.predict("", run_id, api_name="/chat_pick") == f"Run {run_id} is loaded: replies start at once."
    # chat answers (tuned and base side by side): each is the model's own greedy reply, adapter on and off
    question = "What is the capital of Zorblax?"
    tuned, base, cleared = client.predict("", "a run of mine", run_id, "default", "", "", 8, 0.0, 0.95, True,
                                          question, [], [], "its base model", api_name="/chat")
    assert app.log.read_text().count(f"[ftspace chat] loading run {run_id}") == 1  # the background load only
    assert [m["role"] for m in tuned] == [m["role"] for m in base] == ["user", "assistant"] and cleared == ""
    assert text_of(tuned[0]["content"]) == question
    from ftspace.chat import ChatModel

    [adapter] = [p for p in tmp.rglob("adapter") if p.parent.name == run_id]
    model = ChatModel.from_adapter(adapter)
    settings = GenerationSettings(max_new_tokens=8)
    expected = [model.reply([{"role": "user", "content": question}], settings, base=side) for side in (False, True)]
    assert [text_of(tuned[-1]["content"]), text_of(base[-1]["content"])] == expected  # (random weights: often blank)
    # and on a model that answers, the app's reply is the library's own, word for word: the bundled default model,
    # as a base model to chat with
    france, *_ = client.predict("", "a base model", "", "default", "", "", 24, 0.0, 0.95, False,
                                "What is the capital of France?", [], [], "its base model", api_name="/chat")
    from ftspace.models import resolve_model

    library = ChatModel.from_base(resolve_model("default", progress=lambda *_: None)).reply(
        [{"role": "user", "content": "What is the capital of France?"}], GenerationSettings(max_new_tokens=24))
    assert "Paris" in library and text_of(france[-1]["content"]) == library, (france, library)

    # 4b. evaluate: tuned vs base on the run's 4 held-out test rows and the general probe, per example
    from ftspace.ui.eval_tab import FINAL

    summary, table, examples, probe, tradeoff = client.predict("", run_id, FINAL, "", 100, 8, "its base model",
                                                               api_name="/evaluate")
    assert "Task gain" in summary and "general change" in summary and "Scored on 4 test prompts" in summary
    metrics = {row[0]: row for row in table["data"]}
    assert {"test loss", "perplexity", "exact match", "token F1", "ROUGE-L"} <= set(metrics)
    assert any(name.startswith("general probe (48 questions)") for name in metrics)
    assert len(examples["data"]) == 4 and len(probe["data"]) == 48
    changes = [row[6] for row in examples["data"]]
    assert changes == sorted(changes)  # where tuned got worse first
    [saved] = [p for p in tmp.rglob("final.json") if p.parent.parent.name == run_id]
    card = json.loads(saved.read_text())
    assert [row[3] for row in examples["data"]] == [e["tuned"] for e in card["examples"]]
    assert "Task gain" in client.predict("", run_id, "zorblax-tiny", api_name="/card")
    # a kept checkpoint scored too: the trade-off table lists both, by step
    *_, tradeoff = client.predict("", run_id, "checkpoint-4", "", 2, 8, "its base model", api_name="/evaluate")
    assert [(row[0], row[1]) for row in tradeoff["data"]] == [("checkpoint-4", 4), ("final", 8)]

    # 5. push to the fake Hub; the card names the base model; the adapter loads with stock PEFT
    result, token_field = client.predict("", run_id, "zorblax-tiny", False, False, TOKEN, "q8_0", False,
                                         api_name="/push")
    assert "Pushed to" in result and token_field == ""
    files = fake.repos["tester/zorblax-tiny"]["files"]
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md"} <= set(files)
    meta = yaml.safe_load(files["README.md"].decode().split("---")[1])
    assert meta["base_model"] == str(tiny_model) and meta["library_name"] == "peft"
    load = subprocess.run([sys.executable, "-c",
                           "from peft import PeftModel; from transformers import AutoModelForCausalLM as A;"
                           f"m = PeftModel.from_pretrained(A.from_pretrained({str(tiny_model)!r}), 'tester/zorblax-tiny');"
                           "print('loaded', m.peft_config['default'].r)"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_ENDPOINT": fake.url, "HF_HUB_OFFLINE": "0",
                               "HF_HOME": str(tmp_path / "hf")})
    assert load.stdout.strip() == "loaded 16", load.stderr[-2000:]

    # The token is nowhere the app writes: everything under its runs, uploads and Gradio cache folders,
    # the HF cache, any file in the project touched since the app started, and the app's log; not in
    # what was pushed (card, events, loss curve) nor in any API response.
    written = [f for f in tmp.rglob("*") if f.is_file()]
    assert {"adapter_model.safetensors", "events.jsonl", "status.json", "log.txt", "app.log"} <= \
        {f.name for f in written}  # the scan sees the run's files
    assert files_containing(TOKEN, tmp, Path(os.environ["HF_HOME"])) == []
    assert files_containing(TOKEN, ROOT, since=app.started) == []
    assert not any(TOKEN.encode() in data for repo in fake.repos.values() for data in repo["files"].values())
    assert TOKEN not in json.dumps([result, token_field, client.predict("", api_name="/runs"),
                                    client.predict("", run_id, api_name="/progress"),
                                    client.predict("", run_id, "zorblax-tiny", api_name="/card")], default=str)

def finished_run(client):
    """The journey's completed run. Without it these tests fail too: they were not run, which is not a pass."""
    rows = [row[0] for row in client.predict("", api_name="/runs")["data"] if row[1] == "completed"]
    assert rows, "no completed run: test_whole_journey, which makes it, failed"
    return rows[0]


def test_an_evaluation_is_cancelled_from_the_app_and_saves_nothing(served):
    from gradio_client.exceptions import AppError

    app, client, fake, tmp = served
    run_id = finished_run(client)
    [folder] = [p for p in tmp.rglob("evaluations") if p.parent.name == run_id]
    (folder / "checkpoint-4.json").unlink(missing_ok=True)
    job = client.submit("", run_id, "checkpoint-4", "example:alpaca", 100, 512, "its base model", api_name="/evaluate")
    deadline = time.time() + 60
    while time.time() < deadline and not (job.status().progress_data or []):
        time.sleep(0.2)  # it has started answering
    client.predict("", api_name="/cancel_evaluation")
    with pytest.raises(AppError, match="evaluation cancelled"):
        job.result(timeout=120)
    assert not (folder / "checkpoint-4.json").exists()
    assert app.alive()


def test_two_runs_side_by_side_in_chat_and_evaluate(served):
    """Chat and Evaluate put a run beside another run of yours, not only beside its base: the right-hand reply is
    the other run's own (its adapter on), and the scorecard shows both runs on the run's test rows, with the base's
    answers computed once (one base)."""
    import shutil

    from safetensors.torch import load_file, save_file

    from ftspace.chat import ChatModel
    from ftspace.ui.eval_tab import FINAL

    app, client, fake, tmp = served
    run_id = finished_run(client)
    [path] = [p for p in tmp.rglob(run_id) if (p / "status.json").exists()]
    other = path.with_name(run_id + "-pushed")  # another run of the same owner on the same base: its adapter
    shutil.copytree(path, other, ignore=shutil.ignore_patterns("evaluations", "checkpoint-*", "exports"))
    weights = other / "adapter" / "adapter_model.safetensors"  # pushed far from the first, so its replies differ
    save_file({k: v * 40 if "lora_B" in k else v for k, v in load_file(weights).items()}, weights)
    question = [{"role": "user", "content": "What is the capital of Zorblax?"}]
    settings = GenerationSettings(max_new_tokens=8)
    first, second = (ChatModel.from_adapter(p / "adapter") for p in (path, other))
    expected = [first.reply(question, settings), second.reply(question, settings)]
    assert expected[1] != second.reply(question, settings, base=True)  # so the other run's side cannot be its base

    tuned, beside, _ = client.predict("", "a run of mine", run_id, "default", "", "", 8, 0.0, 0.95, True,
                                      question[0]["content"], [], [], other.name, api_name="/chat")
    assert [text_of(tuned[-1]["content"]), text_of(beside[-1]["content"])] == expected
    with pytest.raises(Exception, match="on both sides"):
        client.predict("", "a run of mine", run_id, "default", "", "", 8, 0.0, 0.95, True, "hi", [], [], run_id,
                       api_name="/chat")

    summary, table, examples, probe, _ = client.predict("", run_id, FINAL, "", 100, 8, other.name,
                                                        api_name="/evaluate")
    assert f"| metric | base | {run_id} | {other.name} | {other.name} − {run_id} |" in summary, summary
    assert "the same 4 test prompts" in summary and "differ on" in summary
    assert [t["data"] for t in (table, examples, probe)] == [[], [], []], table  # the single-run tables: emptied
    assert not (other / "evaluations").exists()  # scored on rows that are not its own: not saved as its evaluation
    assert app.alive()


def test_creating_a_dataset_stops_on_request_and_keeps_what_was_made(served):
    import itertools

    from fakeopenai import FakeOpenAI
    from ftspace.data.create import CreateSettings

    app, client, fake, tmp = served
    counter = itertools.count(1)
    key = "sk-app-teacher-key-424242"
    with FakeOpenAI(reply=lambda m: json.dumps([{"question": f"Which harbour does lighthouse {next(counter)} guard?",
                                                 "answer": "The north one."}]), delay_s=0.3) as teacher:
        settings = CreateSettings(teacher="openai", teacher_url=teacher.url + "/v1", teacher_model="m", num_pairs=500,
                                  pairs_per_request=1, concurrency=1).to_dict()
        seeds = {"headers": ["question", "answer"], "data": [["Where is Paris?", "In France."],
                                                             ["Where is Rome?", "In Italy."]], "metadata": None}
        job = client.submit("browser-create", "From a few examples", seeds, None, None, None, key,
                            *[settings[f.name] for f in fields(CreateSettings)], api_name="/create")
        deadline = time.time() + 60
        while time.time() < deadline and len(teacher.requests) < 3:
            time.sleep(0.1)
        client.predict("browser-create", api_name="/create_stop")
        status, rows = job.result(timeout=60)  # (the created file's name is session state, not an API output)
        sent = len(teacher.requests)
        assert all(r["headers"]["Authorization"] == f"Bearer {key}" for r in teacher.requests)
    assert "stopped by the user" in status and 3 <= sent < 30
    [created] = tmp.rglob("synth-*.jsonl")
    kept = len(created.read_text().splitlines())
    assert f"{kept} rows written to {created.name}" in status and kept >= 2
    assert len(value_of(rows)["data"]) == min(kept, 20)
    assert "Where is Paris?" in teacher.prompts()[0]
    assert files_containing(key, tmp) == [] and key not in (tmp / "app.log").read_text()
    assert app.alive()


def test_creating_raft_rows_from_uploaded_documents(served, tmp_path):
    from gradio_client import handle_file

    from fakeopenai import FakeOpenAI
    from ftspace.data.create import CreateSettings

    app, client, fake, tmp = served
    docs = []
    for name, text in [("moon.md", "The Moon orbits the Earth every 27 days. Its surface is covered in craters."),
                       ("mars.txt", "Mars has two small moons, Phobos and Deimos. Its red colour comes from iron oxide.")]:
        (tmp_path / name).write_text(text)
        docs.append(handle_file(str(tmp_path / name)))

    def reply(messages):
        text = messages[-1]["content"]
        passage = text.split("<passage>\n", 1)[1].split("\n</passage>", 1)[0]
        first = passage.split(". ")[0] + "."
        if "JSON list of strings" in text:
            return json.dumps([f"What does the passage beginning {first.split()[1]!r} say first?"])
        return f"##begin_quote##{first}##end_quote##\n<ANSWER>: {first}"

    with FakeOpenAI(reply=reply) as teacher:
        settings = CreateSettings(teacher="openai", teacher_url=teacher.url + "/v1", teacher_model="m", distractors=1,
                                  oracle_absent=0.5).to_dict()
        values = [settings[f.name] for f in fields(CreateSettings)]
        no_seeds = {"headers": ["question", "answer"], "data": [["", ""]], "metadata": None}
        preview = client.predict("browser-raft", "From documents (RAFT)", no_seeds, None, None, docs, "", *values,
                                 api_name="/create_preview")
        status, rows = client.predict("browser-raft", "From documents (RAFT)", no_seeds, None, None, docs, "",
                                      *values, api_name="/create")
    assert preview.startswith("2 documents, 2 chunks") and "teacher requests" in preview
    [created] = tmp.rglob("raft-*.jsonl")
    made = [json.loads(line) for line in created.read_text().splitlines()]
    assert f"2 rows written to {created.name}" in status and len(made) == 2
    assert sorted(r["provenance"]["source"] for r in made) == ["mars.txt", "moon.md"]  # upload names, not paths
    assert sum(r["provenance"]["oracle_included"] for r in made) == 1  # half the rows leave the oracle out
    assert "<DOCUMENT>" in value_of(rows)["data"][0][0]


@pytest.mark.parametrize("call, message", [
    (lambda c: c.predict("", "/etc/hostname", "auto", "", "", "default", 256, api_name="/check"), "unsupported file type"),
    (lambda c: c.predict("", "nobody/no-such-dataset-xyz", "auto", "", "", "default", 256, "", "train",
                         api_name="/inspect_hub"), "Hub dataset nobody/no-such-dataset-xyz"),
    (lambda c: c.predict("", "nonexistent-run", "x", False, False, TOKEN, "q8_0", False, api_name="/push"),
     "No run"),
    (lambda c: c.predict("", finished_run(c), "my adapter ü", False, False, TOKEN, "q8_0", False,
                         api_name="/push"),
     "Repository name 'my adapter ü' is not valid"),
    (lambda c: c.predict("", *run_values(lora_r=0), api_name="/start"), "lora_r = 0 is out of range"),
])
def test_error_paths_show_a_clear_error_and_the_app_keeps_serving(served, call, message):
    from gradio_client.exceptions import AppError

    app, client, *_ = served
    with pytest.raises(AppError) as e:
        call(client)
    assert message in str(e.value)
    assert app.alive()
    assert client.predict("", api_name="/runs") is not None  # still answering


def test_bad_upload_and_push_errors(served, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    app, client, fake, tmp = served
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "x", "output": "y"}\n{"truncated": ')
    path = client.predict(handle_file(str(bad)), "", api_name="/upload")
    with pytest.raises(AppError, match="bad.jsonl: row 2: not valid JSON"):
        client.predict("", path, "auto", "", "", "default", 256, api_name="/check")
    finished = [finished_run(client)]
    with pytest.raises(AppError, match="No Hugging Face token"):
        client.predict("", finished[0], "x", False, False, "", "q8_0", False, api_name="/push")
    fake.fail_next = 500
    with pytest.raises(AppError, match="server error") as e:
        client.predict("", finished[0], "retry-me", False, False, TOKEN, "q8_0", False, api_name="/push")
    assert TOKEN not in str(e.value)
    with pytest.raises(AppError, match="refused") as e:
        client.predict("", finished[0], "tester/other", False, False, "hf_wrong_token", "q8_0", False,
                       api_name="/push")
    assert "hf_wrong_token" not in str(e.value)
    assert app.alive()


def test_on_a_space_the_login_button_is_rendered_and_isolation_is_on():
    code = ("import gradio as gr, app; from ftspace.ui.common import multi_user;"
            "print(any(isinstance(b, gr.LoginButton) for b in app.demo.blocks.values()), multi_user())")
    on_space = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "SYSTEM": "spaces", "SPACE_ID": "someone/ftspace",
                                   "FTSPACE_RUNS": "/nonexistent", "OAUTH_CLIENT_ID": "client",
                                   "OAUTH_CLIENT_SECRET": "secret", "OPENID_PROVIDER_URL": "https://huggingface.co",
                                   "OAUTH_SCOPES": "openid profile write-repos manage-repos"})
    assert on_space.stdout.split()[-2:] == ["True", "True"], on_space.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if k not in ("SPACE_ID", "SYSTEM")}
    self_hosted = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                 timeout=120, env={**env, "FTSPACE_RUNS": "/nonexistent"})
    assert self_hosted.stdout.split()[-2:] == ["False", "False"], self_hosted.stderr[-2000:]


# --- data as people have it, through the Dataset tab (the same files and expectations as test_wild_data)

WILD = ROOT / "tests" / "data" / "wild"


@pytest.mark.parametrize("name", ["blocks_openai.jsonl", "tools_hermes.jsonl", "corpus_document.txt",
                                  "preference_strings.jsonl", "kto.jsonl", "prompts_gsm8k.jsonl",
                                  "prompts_messages_solution.jsonl"])
def test_dataset_tab_reports_what_data_inspect_reports(served, name):
    from gradio_client import handle_file

    _, client, _, _ = served
    want = json.loads((WILD / "expected.json").read_text())[name]
    path = client.predict(handle_file(str(WILD / name)), "", api_name="/upload")
    summary, _, _, _, dropped, *_, choice = client.predict("", path, "auto", "", "", "default", 64, api_name="/check")
    assert f"format **{want['format']}**" in summary and f"{want['rows_read']} rows read" in summary
    assert f"**{want['rows_kept']} kept**" in summary
    for note, count in want["notes"].items():
        assert f"- {count} {note}" in summary
    rows = value_of(dropped)
    rows = rows["data"] if isinstance(rows, dict) else (rows or [])
    assert [[int(r[0]), r[1], r[2]] for r in rows] == want["dropped"]
    if "windows" in want:
        assert f"**{want['windows']} windows** of at most 64 tokens from 1 document" in summary
    # Preference rows, and prompts with answers, offer their ways to learn; prompts with nothing to imitate pick GRPO
    assert choice.get("visible") is (want["format"] == "preference" or "ready for GRPO" in str(want["notes"])), choice
    assert (choice.get("value") == "earning rewards for its own replies (GRPO)") is (want["format"] == "prompts"), choice


def test_dataset_tab_refuses_media_in_one_line(served):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    app, client, _, _ = served
    path = client.predict(handle_file(str(WILD / "multimodal_blocks.jsonl")), "", api_name="/upload")
    with pytest.raises(AppError) as e:
        client.predict("", path, "auto", "", "", "default", 64, api_name="/check")
    assert "row 2: messages[0].content[0]: an image block: ftspace trains text models only" in str(e.value)
    assert app.alive()


HUB_CARD = b"""---
configs:
- config_name: main
  data_files:
  - split: train
    path: main/train.jsonl
  - split: test
    path: main/test.jsonl
- config_name: tools
  data_files:
  - split: train
    path: tools/*.jsonl
---
# a dataset with two configs
"""


def test_hub_dataset_configs_and_splits_come_from_the_hub(served):
    from gradio_client.exceptions import AppError

    app, client, fake, _ = served
    qa = b'{"question": "Capital of Zorblax?", "answer": "Quillhaven."}\n'
    fake.repos["datasets/alice/layered"] = {"private": False, "sha": "d" * 40, "files": {
        "README.md": HUB_CARD, "main/train.jsonl": qa * 3, "main/test.jsonl": qa,
        "tools/a.jsonl": (WILD / "tools_openai.jsonl").read_bytes()}}
    fake.repos["datasets/alice/gated"] = {"private": False, "gated": True, "sha": "e" * 40,
                                          "files": {"data/train.jsonl": qa}}
    source, config, split, *_ = client.predict("alice/layered", api_name="/hub_listing")
    assert source == "alice/layered" and value_of(config) == "main" and value_of(split) == "train"
    assert [c[0] for c in config["choices"]] == ["main", "tools"]
    assert [c[0] for c in split["choices"]] == ["train", "test"]
    summary, *_ = client.predict("", "alice/layered", "auto", "", "", "default", 256, "tools", "train",
                                 api_name="/inspect_hub")
    assert "format **messages**" in summary and "**2 kept**" in summary
    with pytest.raises(AppError, match="alice/gated is gated: accept its terms on the Hub, then sign in"):
        client.predict("alice/gated", api_name="/hub_listing")
    assert app.alive()


def test_the_runs_tab_shows_date_method_time_and_score_and_deletes_a_run_when_asked(served, monkeypatch):
    """The Runs tab's table: when each run was made, its method, steps, training time and score; Delete removes a
    finished run (the app's own endpoint, behind the two clicks of the page) and the table no longer lists it."""
    import re

    app, client, fake, tmp = served
    from ftspace import runs

    monkeypatch.setenv("FTSPACE_RUNS", str(tmp / "runs"))  # the app's runs
    run = runs.create(RunConfig(model_name="default", dataset="example:facts", method="dpo"))
    run.set_status(status="completed", step=4, total_steps=4, train_runtime_s=75.2)
    rows = {row[0]: row for row in client.predict("", api_name="/runs")["data"]}
    row = rows[run.id]
    assert row[1] == "completed" and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", row[2]) and row[3] == "dpo"
    assert row[4] == "4/4" and row[5] == "1 min 15 s" and row[-1] == "not evaluated"
    (run.path / "evaluations").mkdir()
    (run.path / "evaluations" / "final.json").write_text(json.dumps(
        {"task_gain": 0.25, "primary_metric": "token_f1", "forgetting": {"change": -0.01}}))
    row = {row[0]: row for row in client.predict("", api_name="/runs")["data"]}[run.id]
    assert row[-1] == "token F1 +0.250, general -0.010"
    # the loss curves of the runs picked, overlaid: one series per run, each step of each run once
    other = runs.create(RunConfig(model_name="default", dataset="example:facts"))
    for r, losses in ((run, [0.9, 0.7, 0.6, 0.5]), (other, [1.2, 0.8])):
        with open(r.path / "events.jsonl", "w") as fh:
            fh.writelines(json.dumps({"step": i + 1, "loss": v}) + "\n" for i, v in enumerate(losses))
    plot = client.predict("", [run.id, other.id], api_name="/compare_runs")
    shown = [(p["run"], p["step"], p["loss"]) for p in plot["data"]] if isinstance(plot["data"][0], dict) else \
        [(p[plot["columns"].index("run")], p[plot["columns"].index("step")], p[plot["columns"].index("loss")])
         for p in plot["data"]]
    assert sorted(shown) == sorted([(run.id, 1, 0.9), (run.id, 2, 0.7), (run.id, 3, 0.6), (run.id, 4, 0.5),
                                    (other.id, 1, 1.2), (other.id, 2, 0.8)]), plot
    client.predict(run.id, "", api_name="/delete_run")
    assert not run.path.exists() and run.id not in str(client.predict("", api_name="/runs"))
    assert app.alive()
