"""A hostile visitor against a public Space: every entry point x the same table of bad requests.

The app runs as a Space (OAuth through the fake Hub, an HF_TOKEN secret set, MCP on). Each hostile request
must be refused in one line (no traceback, no server path in it) with nothing created, downloaded, uploaded or
changed: asserted on the runs and uploads folders, the fake Hub's repos and jobs, and the requests it saw.
Entry points: the tabs' endpoints (gradio_client, signed in through Gradio's real OAuth flow), the MCP tools
(the `mcp` client, with a Bearer token), and the CLI where it acts (the single-user address rule).
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apptools import ROOT, App
from fakehub import FakeHub
from test_app import run_values, value_of
from test_mcp import call
from test_oauth import SPACE_ENV, client_for, sign_in

MALLORY = "hf_mallory_token_0000000001"  # a user's own write token (the attacker's)
ORG = "hf_org_token_00000000000002"  # an organization's token
READ = "hf_read_token_0000000000003"  # mallory's read-only token
REVOKED = "hf_revoked_token_000000004"  # accepted once, then revoked
SECRET = "server-private-note-7f3a9"


@pytest.fixture(scope="module")
def space(tmp_path_factory, tiny_model):
    tmp = tmp_path_factory.mktemp("hostile")
    server = tmp / "server-folder"  # a folder on the server that looks like a model, with a private note
    server.mkdir()
    (server / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (server / "note.txt").write_text(SECRET)
    with FakeHub(token="hf_owner_secret_0000000009", user="owner") as fake:
        fake.tokens.update({MALLORY: "mallory", ORG: "some-org", READ: "mallory", REVOKED: "mallory"})
        fake.token_auth[ORG] = ("org", {"type": "access_token", "accessToken": {"role": "write"}})
        fake.token_auth[READ] = ("user", {"type": "access_token", "accessToken": {"role": "read"}})
        fake.repos["owner/private-model"] = {"private": True, "files": {"config.json": b"{}"}, "sha": "1" * 40}
        fake.repos["big/model"] = {"private": False, "files": {"config.json": b"{}", "model.safetensors": b"x"},
                                   "sha": "2" * 40, "sizes": {"model.safetensors": 64 * 10**9}}
        fake.repos["datasets/big/data"] = {"private": False, "files": {"data.jsonl": b"{}"}, "sha": "3" * 40,
                                           "sizes": {"data.jsonl": 5 * 10**9}}
        with App(tmp, HF_ENDPOINT=fake.url, OPENID_PROVIDER_URL=fake.url, FTSPACE_MCP="1",
                 HF_TOKEN="hf_owner_secret_0000000009", FTSPACE_IDENTITY_TTL_S="2", FTSPACE_MAX_UPLOADS="3",
                 HF_DATASETS_OFFLINE="0", **SPACE_ENV) as app:
            mallory = client_for(app, sign_in(app.url, fake, "mallory"))
            alice = client_for(app, sign_in(app.url, fake, "alice"))
            yield app, fake, tmp, server, mallory, alice


def mcp_call(app, token, tool, **arguments):
    """An MCP tool of the Space (Gradio names a Space's tools after it); never an unknown tool."""
    ok, text = call(app, token, SPACE_ENV["SPACE_ID"].split("/")[-1] + "_" + tool, **arguments)
    assert ok or "Unknown tool" not in str(text), text
    return ok, text


def snapshot(tmp, fake):
    """Everything a refused request must leave as it was."""
    files = sorted(str(p.relative_to(tmp)) for folder in ("runs", "uploads") if (tmp / folder).exists()
                   for p in (tmp / folder).rglob("*"))
    return files, sorted(fake.repos), len(fake.jobs.jobs)


def one_line(text: str, tmp) -> str:
    text = str(text)
    assert "\n" not in text.strip() and "Traceback" not in text, text
    assert str(tmp) not in text and SECRET not in text, text
    return text


def server_paths(tmp, server, tiny_model):
    """Names of things on the server a visitor must not reach: absolute, relative, ~, .., symlinks into the
    app's runs and uploads, the Hub cache."""
    link = tmp / "link-to-runs"
    if not link.exists():
        (tmp / "runs").mkdir(exist_ok=True)
        link.symlink_to(tmp / "runs")
    return [str(server), str(server / "note.txt"), "server-folder", "examples", "examples/facts.jsonl",
            "./examples/facts.jsonl", "~", "~/.cache/huggingface", "../..", str(tmp / "uploads"), str(link),
            str(tmp / "runs" / ".." / "server-folder"), os.path.expanduser("~/.cache/huggingface/hub"),
            "/etc/hostname", "ftspace/data"]


def refused(fn, *args, match=None, **kwargs):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as e:
        fn(*args, **kwargs)
    if match:
        assert match in str(e.value), str(e.value)
    return str(e.value)


def test_server_paths_are_no_model_and_no_dataset_anywhere(space, tiny_model):
    app, fake, tmp, server, mallory, _ = space
    before = snapshot(tmp, fake)
    for path in server_paths(tmp, server, tiny_model):
        for train_on in ("local", "hf_jobs"):
            one_line(refused(mallory.predict, "", *run_values(model_name=path, train_on=train_on),
                             api_name="/start"), tmp)
        one_line(refused(mallory.predict, "", *run_values(model_name=path), api_name="/estimate"), tmp)
        one_line(refused(mallory.predict, "", *run_values(dataset=path), api_name="/start"), tmp)
        one_line(refused(mallory.predict, "", *run_values(dataset=path, train_on="hf_jobs"), api_name="/start"), tmp)
        one_line(refused(mallory.predict, "", *run_values(test_dataset=path), api_name="/start"), tmp)
        one_line(refused(mallory.predict, "", path, "auto", "", "", "default", 256, api_name="/check"), tmp)
        one_line(refused(mallory.predict, "", "example:facts", "auto", "", "", path, 256, api_name="/check"), tmp)
        one_line(refused(mallory.predict, "", "a base model", None, path, "", "", 4, 0.0, 0.95, False, "hi", [], [],
                         "its base model", api_name="/chat"), tmp)
        for tool, args in (("start_run", {"settings": {"model_name": path}}),
                           ("start_run", {"settings": {"dataset": path, "train_on": "hf_jobs"}}),
                           ("estimate_run", {"settings": {"model_name": path}}),
                           ("inspect_dataset", {"dataset": path})):
            ok, text = mcp_call(app, MALLORY, tool, **args)
            assert not ok, (tool, path, text)
            one_line(text, tmp)
    assert snapshot(tmp, fake) == before
    sent = b"".join(fake.bodies)
    assert SECRET.encode() not in sent and not any("mallory/ftspace-" in r for r in fake.repos)
    # The same refusal whether the path exists or not: nothing says what is on the server's disk.
    there = refused(mallory.predict, "", *run_values(model_name=str(server)), api_name="/start")
    absent = refused(mallory.predict, "", *run_values(model_name=str(server) + "-absent"), api_name="/start")
    assert there == absent.replace("server-folder-absent", "server-folder")
    assert app.alive()


def test_other_callers_files_and_runs_and_hub_repos_they_cannot_read(space, tiny_model, tmp_path):
    from gradio_client import handle_file

    app, fake, tmp, server, mallory, alice = space
    data = tmp_path / "alice.jsonl"
    data.write_text((ROOT / "examples" / "facts.jsonl").read_text())
    shown = alice.predict(handle_file(str(data)), "", api_name="/upload")
    [stored] = (tmp / "uploads").glob("*/*/alice.jsonl")
    # a run folder of alice's, finished, with an adapter
    run = tmp / "runs" / "20260101-000000-alices-run-0000"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_model)}))
    (run / "status.json").write_text(json.dumps({"status": "completed", "owner": "user:alice"}))
    own = tmp / "runs" / "20260101-000000-mallorys-run-0000"  # and one of mallory's, to put alice's run beside
    (own / "adapter").mkdir(parents=True)
    (own / "adapter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_model)}))
    (own / "status.json").write_text(json.dumps({"status": "completed", "owner": "user:mallory"}))
    before = snapshot(tmp, fake)
    for dataset in (shown, str(stored), "../alice.jsonl (uploaded)", "*.jsonl (uploaded)", "owner/private-data",
                    "big/data"):
        one_line(refused(mallory.predict, "", *run_values(dataset=dataset), api_name="/start"), tmp)
        ok, text = mcp_call(app, MALLORY, "inspect_dataset", dataset=dataset)
        assert not ok, text
    for model in ("owner/private-model", "big/model"):
        text = refused(mallory.predict, "", *run_values(model_name=model), api_name="/start")
        one_line(text, tmp)
    assert "FTSPACE_MAX_MODEL_GB" in refused(mallory.predict, "", *run_values(model_name="big/model"),
                                             api_name="/start")
    assert "FTSPACE_MAX_DATASET_MB" in refused(mallory.predict, "", *run_values(dataset="big/data"),
                                               api_name="/start")
    for attempt in (lambda: mallory.predict("", run.name, api_name="/stop"),
                 lambda: mallory.predict(run.name, "", api_name="/delete_run"),
                 lambda: mallory.predict("", [run.name], api_name="/compare_runs"),
                 lambda: mallory.predict("", run.name, "final (the adapter chat and publishing use)", "", 10, 8,
                                         "its base model", api_name="/evaluate"),
                 lambda: mallory.predict("", "a run of mine", run.name, "", "", "", 4, 0.0, 0.95, False, "hi", [], [],
                                         "its base model", api_name="/chat"),
                 # alice's run as the other side of a comparison with mallory's own
                 lambda: mallory.predict("", own.name, "final (the adapter chat and publishing use)", "", 10, 8,
                                         run.name, api_name="/evaluate"),
                 lambda: mallory.predict("", "a run of mine", own.name, "", "", "", 4, 0.0, 0.95, True, "hi", [], [],
                                         run.name, api_name="/chat")):
        assert "No run" in one_line(refused(attempt), tmp)
    by_path = refused(lambda: mallory.predict("../" + run.name, "", api_name="/delete_run"))
    assert "not a run id" in one_line(by_path, tmp)
    for tool, args in (("run_progress", {"run_id": run.name}), ("ask_model", {"run_id": run.name, "prompt": "hi"}),
                       ("push_adapter", {"run_id": run.name, "repo": "stolen"}), ("resume_run", {"run_id": run.name})):
        ok, text = mcp_call(app, MALLORY, tool, **args)
        assert not ok and "No run" in text, (tool, text)
    # A Hub adapter whose config names a server folder as its base is refused, whether the folder exists or not.
    for base in (str(server), str(tiny_model), "../../x"):
        fake.repos["mallory/evil-adapter"] = {"private": False, "sha": "4" * 40, "files": {
            "adapter_config.json": json.dumps({"base_model_name_or_path": base}).encode()}}
        one_line(refused(mallory.predict, "", "an adapter on the Hub", None, "", "mallory/evil-adapter", "", 4, 0.0,
                         0.95, False, "hi", [], [], "its base model", api_name="/chat", match="base model"), tmp)
    del fake.repos["mallory/evil-adapter"]
    assert snapshot(tmp, fake) == before


def test_limits_per_caller(space, tiny_model, tmp_path):
    from gradio_client import handle_file

    app, fake, tmp, server, mallory, _ = space
    before = snapshot(tmp, fake)
    model = str(tiny_model)
    for overrides, limit in (({"max_steps": 10_000_000}, "FTSPACE_MAX_STEPS"),
                             ({"max_steps": -1, "num_train_epochs": 1000}, "FTSPACE_MAX_EPOCHS"),
                             ({"max_seq_length": 131072}, "FTSPACE_MAX_SEQ_LENGTH"),
                             ({"num_processes": 64}, "num_processes")):
        text = one_line(refused(mallory.predict, "", *run_values(model_name=model, **overrides), api_name="/start"), tmp)
        assert limit in text, text
        ok, text = mcp_call(app, MALLORY, "start_run", settings={"model_name": model, **overrides})
        assert not ok and limit in text, text
    assert "FTSPACE_MAX_SWEEP_TRIALS" in refused(mallory.predict, "", 50, *run_values(model_name=model, max_steps=-1),
                                                 api_name="/sweep")
    history = [{"role": role, "content": [{"type": "text", "text": text}]}  # Gradio 6's chat messages
               for role, text in (("user", "hi"), ("assistant", "hello"))] * 30
    assert "FTSPACE_MAX_CHAT_TURNS" in refused(mallory.predict, "", "a base model", None, model, "", "", 4, 0.0, 0.95,
                                               False, "hi", history, [], "its base model", api_name="/chat")
    assert "FTSPACE_MAX_MESSAGE_CHARS" in refused(mallory.predict, "", "a base model", None, model, "", "", 4, 0.0,
                                                  0.95, False, "x" * 9000, [], [], "its base model", api_name="/chat")
    assert snapshot(tmp, fake) == before

    # Runs per caller: two of mallory's may wait or train; a third is refused, naming the limit.
    started = [value_of(mallory.predict("", *run_values(model_name=model, max_steps=2000, max_seq_length=64,
                                                        backend="hf"), api_name="/start")[0]) for _ in range(2)]
    assert "FTSPACE_MAX_RUNS_PER_CALLER" in refused(mallory.predict, "", *run_values(model_name=model),
                                                    api_name="/start")
    for run_id in started:
        mallory.predict("", run_id, api_name="/stop")

    # Uploads: the oldest are removed beyond the owner's count (3 in this app).
    for i in range(5):
        f = tmp_path / f"rows{i}.jsonl"
        f.write_text((ROOT / "examples" / "facts.jsonl").read_text())
        mallory.predict(handle_file(str(f)), "", api_name="/upload")
    kept = sorted(p.name for p in (tmp / "uploads").glob("*/*/rows*.jsonl"))
    assert kept == ["rows2.jsonl", "rows3.jsonl", "rows4.jsonl"]
    assert app.alive()


def test_tokens_of_the_wrong_kind_and_revoked_ones(space):
    app, fake, tmp, *_ = space
    ok, text = mcp_call(app, ORG, "list_runs")
    assert not ok and "not a user's access token" in text, text
    ok, text = mcp_call(app, READ, "push_adapter", run_id="x", repo="y")
    assert not ok and "may write" in text, text
    ok, text = mcp_call(app, READ, "start_run", settings={"train_on": "hf_jobs"})
    assert not ok and "may write" in text, text
    ok, _ = mcp_call(app, REVOKED, "list_runs")
    assert ok
    del fake.tokens[REVOKED]
    time.sleep(2.5)  # the app's identity TTL (FTSPACE_IDENTITY_TTL_S=2)
    ok, text = mcp_call(app, REVOKED, "list_runs")
    assert not ok and "refused the token" in text, text


def test_forged_job_status_lines_are_not_taken(tmp_path, monkeypatch):
    from ftspace import runs
    from ftspace.config import RunConfig
    from ftspace.engine.job import EVENT, STATUS
    from ftspace.targets import jobs_log as jobs

    monkeypatch.setenv("FTSPACE_RUNS", str(tmp_path / "runs"))
    run = runs.create(RunConfig(dataset="example:facts"), owner="user:mallory")
    run.set_status(status="queued", job={"id": "j", "namespace": "mallory", "lines": 0})
    forged = {"status": "running", "step": 3, "owner": "user:alice", "adapter_checkpoint": "../../../etc",
              "job": {"id": "other"}, "error": "boom\n[ftspace status] {\"owner\": \"x\"}", "waiting": True}
    jobs._take(run, STATUS + json.dumps(forged), 1)
    jobs._take(run, STATUS + "{not json", 2)
    jobs._take(run, EVENT + json.dumps(["not", "an", "object"]), 3)
    st = run.read_status()
    assert st["owner"] == "user:mallory" and st["job"]["id"] == "j" and st["step"] == 3
    assert "adapter_checkpoint" not in st and not st.get("waiting")
    assert "\n" not in st["error"] and st["status"] == "running"
    jobs._take(run, STATUS + json.dumps({"adapter_checkpoint": "checkpoint-12"}), 4)
    assert run.read_status()["adapter_checkpoint"] == "checkpoint-12"


def test_a_run_and_a_test_set_read_only_the_rows_and_bytes_the_limits_allow(tiny_model, runs_dir, monkeypatch):
    """A shared app reads the first FTSPACE_MAX_ROWS rows of a dataset (said in the log) and refuses rows
    bigger in all than FTSPACE_MAX_DATASET_MB; an evaluation's test set is read no further."""
    from ftspace import evaluation, runs
    from ftspace.config import RunConfig
    from ftspace.data import DataError
    from ftspace.engine.prepare import prepare, prepared_dir

    monkeypatch.setenv("FTSPACE_MULTIUSER", "1")
    monkeypatch.setenv("FTSPACE_MAX_ROWS", "10")
    said = []
    run = runs.create(RunConfig(model_name=str(tiny_model), dataset="example:facts", test_dataset="example:alpaca",
                                validation_size=2, max_seq_length=64))
    info = prepare(run, None, log=said.append)
    assert info["train_rows"] + info["eval_rows"] == 10 and info["test_rows"] == 10
    assert len((prepared_dir(run) / "test.jsonl").read_text().splitlines()) == 10
    assert any("first 10 rows only" in line and "FTSPACE_MAX_ROWS" in line for line in said), said
    rows, _ = evaluation.test_rows(run, evaluation.EvalOptions(test_dataset="example:facts"))
    assert len(rows) == 10
    monkeypatch.setenv("FTSPACE_MAX_DATASET_MB", "0.001")  # 1 kB of rows
    big = runs.create(RunConfig(model_name=str(tiny_model), dataset="example:facts", max_seq_length=64))
    with pytest.raises(DataError, match="FTSPACE_MAX_DATASET_MB"):
        prepare(big, None, log=said.append)
    assert not prepared_dir(big).exists()


def test_a_jobs_adapter_keeps_the_base_its_run_was_admitted_with(tmp_path, monkeypatch):
    """The job's repo is the visitor's and editable: whatever base its adapter_config names, the pulled adapter
    is set on the run's own (admitted) base model."""
    from ftspace import runs
    from ftspace.config import RunConfig
    from ftspace.targets import jobs_log as jobs

    monkeypatch.setenv("FTSPACE_RUNS", str(tmp_path / "runs"))
    run = runs.create(RunConfig(model_name="default", dataset="example:facts"), owner="user:mallory")

    class Edited:  # the visitor edited their repo's adapter config to name the owner's private model
        def snapshot_download(self, repo_id, allow_patterns, local_dir):
            (Path(local_dir) / "adapter").mkdir()
            (Path(local_dir) / "adapter" / "adapter_config.json").write_text(
                json.dumps({"base_model_name_or_path": "owner/private-model", "r": 8}))

    jobs.pull_adapter(run, Edited(), "mallory/ftspace-x")
    config = json.loads((run.adapter_dir / "adapter_config.json").read_text())
    assert config == {"base_model_name_or_path": "default", "r": 8}


def test_an_estimate_reads_only_the_callers_own_runs(tmp_path, monkeypatch):
    """The measured step time of an estimate comes from the caller's own runs on a shared app (another visitor's
    run of the same model says nothing to them); self-hosted, from any run."""
    from ftspace import runs, targets
    from ftspace.config import RunConfig

    monkeypatch.setenv("FTSPACE_RUNS", str(tmp_path / "runs"))
    cfg = RunConfig(dataset="example:facts")
    alices = runs.create(cfg, owner="user:alice")
    alices.events_path.write_text("".join(json.dumps({"step": s, "loss": 1.0, "elapsed_s": 3.0 * s}) + "\n"
                                          for s in (1, 2, 3)))
    assert runs.measured_step_seconds(cfg, targets.runs_owner(targets.Caller("user:alice"))) == 3.0
    assert runs.measured_step_seconds(cfg) == 3.0  # self-hosted: the machine's runs are its user's
    monkeypatch.setenv("FTSPACE_MULTIUSER", "1")
    assert runs.measured_step_seconds(cfg, targets.runs_owner(targets.Caller("user:mallory"))) is None
    assert runs.measured_step_seconds(cfg, targets.runs_owner(targets.Caller("user:alice"))) == 3.0


def test_uploads_are_kept_within_their_bytes_and_a_file_too_big_is_refused(tmp_path, monkeypatch):
    from ftspace import owners
    from ftspace.errors import ConfigError

    monkeypatch.setenv("FTSPACE_MULTIUSER", "1")
    monkeypatch.setenv("FTSPACE_DATA", str(tmp_path))
    monkeypatch.setenv("FTSPACE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("FTSPACE_MAX_UPLOADS_MB", str(10_000 / 2**20))  # 10,000 bytes
    kept = []
    for i in range(4):  # 4 kB each: the third makes 12 kB, so the oldest go
        kept.append(owners.keep_upload("user:mallory", f"rows{i}.jsonl", f"f{i}", data=b"x" * 4000))
        time.sleep(0.01)
    left = sorted(p.name for p in owners.owner_uploads("user:mallory").glob("*/*"))
    assert left == ["rows2.jsonl", "rows3.jsonl"], left
    with pytest.raises(ConfigError, match="FTSPACE_MAX_UPLOADS_MB"):
        owners.keep_upload("user:mallory", "big.jsonl", "g", data=b"x" * 20_000)
    assert sorted(p.name for p in owners.owner_uploads("user:mallory").glob("*/*")) == left
    assert not owners.owner_uploads("user:alice").exists() or not any(owners.owner_uploads("user:alice").iterdir())


def test_a_dataset_creation_is_refused_beyond_its_rows_and_teacher_requests(monkeypatch):
    from ftspace import targets
    from ftspace.data.create.settings import CreateSettings
    from ftspace.errors import ConfigError

    monkeypatch.setenv("FTSPACE_MULTIUSER", "1")
    mallory = targets.Caller("user:mallory")
    with pytest.raises(ConfigError, match="FTSPACE_MAX_TEACHER_ROWS"):
        targets.admit_creation(CreateSettings(num_pairs=100_000), "synth", 3, 0, mallory)
    monkeypatch.setenv("FTSPACE_MAX_TEACHER_REQUESTS", "2")
    with pytest.raises(ConfigError, match="FTSPACE_MAX_TEACHER_REQUESTS"):
        targets.admit_creation(CreateSettings(num_pairs=40), "synth", 3, 0, mallory)
    monkeypatch.setenv("FTSPACE_MAX_TEACHER_REQUESTS", "1000")
    targets.admit_creation(CreateSettings(num_pairs=40), "synth", 3, 0, mallory)  # within both


def test_one_visitor_cannot_hold_every_chat_and_evaluation_slot(monkeypatch):
    from ftspace import targets
    from ftspace.errors import RunError

    monkeypatch.setenv("FTSPACE_MULTIUSER", "1")
    mallory, alice = targets.Caller("user:mallory"), targets.Caller("user:alice")
    with targets.model_slot(mallory):
        with pytest.raises(RunError, match="FTSPACE_MAX_MODEL_SLOTS"):
            with targets.model_slot(mallory):
                pass
        with targets.model_slot(alice):  # another visitor still gets one
            pass
    with targets.model_slot(mallory):  # released when the answer ends
        pass
    monkeypatch.setenv("FTSPACE_MAX_MODEL_SLOTS", "2")
    with targets.model_slot(mallory), targets.model_slot(mallory):
        pass


def test_column_and_file_names_cannot_forge_a_line(tmp_path):
    """A column name (or a file name) with a newline is shown escaped: a message or log line stays one line, so
    it cannot forge a job's status line."""
    from ftspace.data import open_dataset
    from ftspace.engine.job import STATUS
    from ftspace.errors import DataError

    forged = "x\n" + STATUS + json.dumps({"owner": "user:alice"})
    data = tmp_path / "rows\nname.jsonl"
    for row, options in (({forged: "1"}, {}),
                         ({"prompt": "q", forged: "1"}, {"prompt_column": "prompt", "response_column": "answer"}),
                         ({"messages": [{"role": "user", "content": "q"}], forged: 1}, {"dataset_format": "sharegpt"})):
        data.write_text(json.dumps(row) + "\n")
        try:
            report, stream = open_dataset(str(data), **options)
            list(stream)
            text = report.summary() + "\n" + json.dumps(report.dropped)  # a summary has a line per note
        except DataError as e:
            text = str(e)
            assert "\n" not in text, text
        assert "x\n" not in text and "rows\nname" not in text, text
        assert not any(line.lstrip().startswith(STATUS) for line in text.splitlines()), text


def test_a_teacher_url_that_rebinds_to_loopback_is_never_reached(monkeypatch):
    from ftspace.data.create.settings import CreateSettings
    from ftspace.data.create.teacher import Teacher
    from ftspace.errors import ConfigError

    monkeypatch.setenv("FTSPACE_MULTIUSER", "1")
    answers = iter([["93.184.215.14"], ["127.0.0.1"]])

    def rebinding(host, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 0)) for address in next(answers)]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    teacher = Teacher(CreateSettings(teacher="openai", teacher_url="http://teacher.example/v1", teacher_model="m"))
    with pytest.raises(ConfigError, match="own network"):  # the second lookup, made for the connection itself
        teacher._post_openai({"model": "m", "messages": []})
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [(socket.AF_INET, 1, 6, "", ("100.64.1.2", 0))])
    with pytest.raises(ConfigError, match="own network"):
        Teacher(CreateSettings(teacher="openai", teacher_url="http://cgnat.example/v1", teacher_model="m"))


def test_a_docx_bomb_is_refused_before_it_is_read(tmp_path, monkeypatch):
    import zipfile

    from ftspace.data.create.documents import read_document
    from ftspace.errors import ConfigError

    monkeypatch.setenv("FTSPACE_MULTIUSER", "1")
    monkeypatch.setenv("FTSPACE_MAX_DOCUMENT_MB", "1")
    bomb = tmp_path / "bomb.docx"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("word/document.xml", "<w:document>" + " " * (3 * 2**20) + "</w:document>")
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ConfigError, match="FTSPACE_MAX_DOCUMENT_MB"):
        read_document(bomb)


def test_single_user_mode_will_not_listen_on_a_public_address(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("FTSPACE_MULTIUSER", "SYSTEM", "SPACE_ID")}
    env.update(GRADIO_SERVER_NAME="0.0.0.0", FTSPACE_RUNS=str(tmp_path / "runs"))
    done = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "FTSPACE_ALLOW_PUBLIC=1" in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "runs").exists()


def test_the_docs_list_every_limit_as_the_code_has_it():
    from ftspace import limits

    readme = (ROOT / "docs" / "space.md").read_text()
    start = readme.index("<!-- limits:")
    table = readme[readme.index("\n", start) + 1:readme.index("<!-- /limits -->")].strip()
    assert table == limits.table(), "docs/space.md's limits table is stale: paste ftspace.limits.table() into it"
    for name in ("FTSPACE_OWNER_MODELS", "FTSPACE_IDENTITY_TTL_S", "FTSPACE_ALLOW_PUBLIC"):
        assert f"`{name}" in readme, name
