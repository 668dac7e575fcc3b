"""status.json under concurrency: the app's threads and other processes (a worker, the CLI) update one run
at once. Every update lands whole, none is lost, a reader never sees a half-written file or an invented
status, and a finished run is never turned back into an interrupted one."""

import json
import subprocess
import sys
import threading

import pytest

from apptools import ROOT
from ftspace import runs
from ftspace.errors import RunError
from ftspace.config import RunConfig

N_THREADS, N_UPDATES = 8, 150


def hammer(run, name: str, errors: list):
    try:
        for i in range(N_UPDATES):
            run.set_status(**{name: i})
            st = run.read_status()
            assert st.get("owner") == "alice", st  # no write ever drops another field
            assert st["status"] == "running", st  # never an invented status
    except Exception as e:  # collected: an assertion in a thread would not fail the test by itself
        errors.append(f"{name}: {type(e).__name__}: {e}")


def test_many_threads_and_two_processes_update_one_run(runs_dir):
    run = runs.create(RunConfig(dataset="example:facts"), owner="alice")
    run.set_status(status="running")
    code = ("import sys; from pathlib import Path; from ftspace.runs import Run\n"
            "run = Run(Path(sys.argv[1]))\n"
            f"for i in range({N_UPDATES}):\n"
            "    run.set_status(**{sys.argv[2]: i})\n"
            "    st = run.read_status()\n"
            "    assert st.get('owner') == 'alice' and st['status'] == 'running', st\n")
    others = [subprocess.Popen([sys.executable, "-c", code, str(run.path), f"proc{k}"], cwd=ROOT,
                               stderr=subprocess.PIPE, text=True) for k in range(2)]
    errors: list[str] = []
    threads = [threading.Thread(target=hammer, args=(run, f"thread{k}", errors)) for k in range(N_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for proc in others:
        _, err = proc.communicate(timeout=120)
        if proc.returncode:
            errors.append(err[-1500:])
    assert errors == []
    final = json.loads((run.path / "status.json").read_text())
    for name in [f"thread{k}" for k in range(N_THREADS)] + ["proc0", "proc1"]:
        assert final[name] == N_UPDATES - 1, (name, final.get(name))  # every writer's last update kept
    assert not list(run.path.glob(".status.json.*"))  # no temp files left behind


def test_a_status_that_cannot_be_read_is_not_invented_or_overwritten(runs_dir):
    run = runs.create(RunConfig(dataset="example:facts"), owner="alice")
    (run.path / "status.json").write_text('{"status": "completed", "owner": "ali')  # damaged by hand
    st = run.read_status()
    assert st["status"] == "unknown" and "status.json" in st["error"]
    with pytest.raises(RunError, match="status.json cannot be read"):
        run.set_status(step=3)  # must not replace what it could not read (the owner would be lost)
    assert (run.path / "status.json").read_text().endswith('"owner": "ali')


def test_a_completed_run_is_never_marked_interrupted(runs_dir):
    run = runs.create(RunConfig(dataset="example:facts"))
    run.set_status(status="running")
    seen = run.read_status()  # a reader saw it running, its worker then finished and exited
    run.set_status(status="completed", step=8)
    assert seen["status"] == "running"
    assert run.status()["status"] == "completed"  # the liveness check re-reads
    assert run.record_if_gone()["status"] == "completed"
    run.set_status(status="interrupted", error="the worker process ended unexpectedly")
    assert run.read_status()["status"] == "completed"


def test_the_app_reads_only_new_events(runs_dir):
    run = runs.create(RunConfig(max_steps=5), owner="alice")
    assert run.all_events() == []
    with open(run.events_path, "a") as fh:
        fh.write(json.dumps({"step": 1, "loss": 2.0}) + "\n" + '{"step": 2, "lo')  # the last line half-written
    assert [e["step"] for e in run.all_events()] == [1]
    with open(run.events_path, "a") as fh:
        fh.write('ss": 1.5}\n')
    assert [e["step"] for e in run.all_events()] == [1, 2]
    # Only the new bytes are parsed: a poll after nothing was appended parses nothing.
    real_loads, parsed = json.loads, []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runs.json, "loads", lambda text, *a, **k: parsed.append(text) or real_loads(text, *a, **k))
        assert [e["step"] for e in run.all_events()] == [1, 2]
    assert parsed == []
    run.events_path.write_text(json.dumps({"step": 1, "loss": 9.0}) + "\n")  # replaced by a shorter file
    assert run.all_events() == [{"step": 1, "loss": 9.0}]


def test_a_run_is_deleted_whole_and_only_when_it_is_not_training(runs_dir):
    import os

    import psutil

    run = runs.create(RunConfig(model_name="default", dataset="example:facts"))
    # its worker: this process, alive (a run whose worker is gone is interrupted, and may go)
    (run.path / "worker.json").write_text(json.dumps({"pid": os.getpid(), "started": psutil.Process().create_time()}))
    for status in runs.ACTIVE:
        run.set_status(status=status)
        with pytest.raises(RunError, match=f"Run {run.id} is {status}: stop it first, then delete it."):
            runs.delete(run)
        assert run.path.is_dir()
    run.set_status(status="completed", step=4, total_steps=4)
    (run.path / "evaluations").mkdir()
    (run.path / "evaluations" / "final.json").write_text("{}")
    runs.delete(run)
    assert not run.path.exists() and runs.list_runs() == []


def test_what_a_page_made_before_it_knew_its_browser_id_follows_it(runs_dir):
    """A new browser's first events (an upload while the page still loads) carry no browser id: their owner is the
    page's session. When the page learns its id, its upload and its runs become that owner's (the browser test
    once lost an upload this way: 'no upload of yours has that name')."""
    from ftspace import owners

    session, browser = "browser:session", "browser:localstorage"
    kept = owners.keep_upload(session, "chat.jsonl", "f1", data=b'{"text": "hi"}\n')
    run = runs.create(RunConfig(model_name="default", dataset=str(kept)), owner=session)
    owners.adopt(session, browser)
    assert owners.dataset_from_shown(browser, "chat.jsonl (uploaded)").endswith("chat.jsonl")
    assert run.read_status()["owner"] == browser
    assert owners.dataset_from_shown(session, "chat.jsonl (uploaded)") == str(kept)  # where the run reads it
    owners.adopt(browser, browser)  # nothing to do
    assert run.read_status()["owner"] == browser


def test_an_upload_that_lands_after_the_page_knows_its_id_is_still_the_pages(runs_dir, monkeypatch):
    """The adoption above runs in the page's load event; an upload sent before it and finished after it lands in
    the session's folder. The page's later events carry both owners (targets.Caller.page): the upload is found by
    its name and by its path, and another page (another session) finds neither."""
    from ftspace import owners, targets
    from ftspace.errors import DataError

    monkeypatch.setenv("FTSPACE_MULTIUSER", "1")
    session, browser = "browser:session", "browser:localstorage"
    owners.adopt(session, browser)  # the load event: nothing made yet
    kept = owners.keep_upload(session, "late.jsonl", "f2", data=b'{"text": "hi"}\n')  # the upload finishes now
    page = targets.Caller(browser, page=session)
    assert targets.admit_dataset("late.jsonl (uploaded)", page) == str(kept)
    assert targets.admit_dataset(str(kept), page) == str(kept)
    other = targets.Caller("browser:other", page="browser:othersession")
    with pytest.raises(DataError, match="late.jsonl: no upload of yours has that name: upload the file again."):
        targets.admit_dataset("late.jsonl (uploaded)", other)
    with pytest.raises(DataError, match="on this shared app a dataset is"):
        targets.admit_dataset(str(kept), other)
