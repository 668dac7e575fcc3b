"""Faults survived: a crash in the middle of a checkpoint write, a full disk while saving, and the app
itself restarting (or the whole machine going down) while a run trains.

Faults inside the worker are injected by tests/faults/sitecustomize.py, which the worker process loads
through PYTHONPATH: it kills the process, or points writes at /dev/full (the kernel's ENOSPC), when a
file of a chosen checkpoint is opened for writing.
"""

import errno
import json
import os
import signal
from pathlib import Path

import pytest

from apptools import App, progress
from ftspace import runs
from ftspace.targets import local
from ftspace.engine.saving import STAGING, is_disk_full, save_adapter
from test_app import run_values, value_of
from test_engine import resume_to_the_end, tiny_config, wait_until

FAULTS = Path(__file__).resolve().parent / "faults"


@pytest.fixture
def fault(monkeypatch):
    """fault('kill:checkpoint-4/') arms the fault for workers launched from now on; fault(None) disarms."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FAULTS), os.environ.get("PYTHONPATH", "")]))

    def arm(spec):
        if spec:
            monkeypatch.setenv("FTSPACE_FAULT", spec)
        else:
            monkeypatch.delenv("FTSPACE_FAULT", raising=False)
    return arm


def complete_checkpoints(run):
    out = []
    for path in sorted(run.checkpoints_dir.glob("checkpoint-*")):
        json.loads((path / "trainer_state.json").read_text())  # every checkpoint in place is whole
        assert (path / "adapter_model.safetensors").stat().st_size > 0 and (path / "optimizer.pt").exists()
        out.append(path.name)
    return out


def test_sigkill_in_the_middle_of_a_checkpoint_write(tiny_model, runs_dir, fault):
    fault("kill:checkpoint-4/")
    run, proc = local.start(tiny_config(tiny_model, max_steps=8, save_steps=2, backend="hf"))
    proc.wait(timeout=300)
    assert proc.returncode == -signal.SIGKILL, run.log_path.read_text()[-3000:]
    st = run.status()
    assert st["status"] == "interrupted", st
    # checkpoint-4 was being written: only its staging copy exists, and resume never looks there.
    assert complete_checkpoints(run) == ["checkpoint-2"]
    assert any((run.checkpoints_dir / STAGING).rglob("*")), "the fault fired before any checkpoint-4 file"
    assert run.last_checkpoint().name == "checkpoint-2"

    fault(None)
    resume_to_the_end(run, total=8)
    assert not (run.checkpoints_dir / STAGING).exists()
    assert complete_checkpoints(run) == ["checkpoint-4", "checkpoint-6", "checkpoint-8"]  # save_total_limit 3


def test_disk_full_while_saving_fails_clearly_and_keeps_the_earlier_checkpoint(tiny_model, runs_dir, fault):
    fault("full:checkpoint-4/")
    run, proc = local.start(tiny_config(tiny_model, max_steps=8, save_steps=2, backend="hf"))
    st = run.wait(timeout=300)
    assert st["status"] == "failed", run.log_path.read_text()[-3000:]
    assert st["error"].startswith("disk full while saving") and "No space left on device" in st["error"]
    assert "checkpoint-2 is intact" in st["error"] and "resume" in st["error"] and "\n" not in st["error"]
    assert complete_checkpoints(run) == ["checkpoint-2"]
    assert not (run.checkpoints_dir / STAGING).exists()  # the half-written copy is cleaned away

    fault(None)
    resume_to_the_end(run, total=8)


def test_a_failed_adapter_save_leaves_the_previous_adapter_untouched(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"old weights")

    class FullDisk:
        def save_pretrained(self, path):
            Path(path).mkdir(parents=True)
            (Path(path) / "adapter_model.safetensors").write_bytes(b"half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError) as e:
        save_adapter(FullDisk(), FullDisk(), adapter)
    assert is_disk_full(e.value)
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]
    assert (adapter / "adapter_model.safetensors").read_bytes() == b"old weights"


def test_torch_write_failures_count_as_disk_full():
    try:
        try:
            raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")
        except RuntimeError:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
    except RuntimeError as e:
        assert is_disk_full(e)
    assert not is_disk_full(ValueError("bad value"))


# --- the app restarts while a run trains


def start_run(app, tiny_model, steps):
    from gradio_client import Client

    client = Client(app.url, verbose=False)
    run_id = value_of(client.predict("", *run_values(model_name=str(tiny_model), dataset="example:alpaca",
                                                     max_steps=steps, max_seq_length=64, save_steps=5,
                                                     backend="hf"), api_name="/start")[0])
    return client, run_id


def worker_pid(tmp, run_id):
    return json.loads((tmp / "runs" / run_id / "worker.json").read_text())["pid"]


def kill_app(app):
    app.proc.kill()
    app.proc.wait()


def test_app_restart_reattaches_to_a_running_worker_and_keeps_the_queue(tiny_model, tmp_path):
    from gradio_client import Client

    with App(tmp_path) as first:
        client, run_id = start_run(first, tiny_model, steps=100000)  # trains until stopped
        _, waiting_id = start_run(first, tiny_model, steps=4)
        wait_until(lambda: "**running**" in progress(client, run_id), what="the run to train")
        kill_app(first)  # SIGKILL: no shutdown code runs
    pid = worker_pid(tmp_path, run_id)
    try:
        os.kill(pid, 0)  # the worker outlived the app (it runs in its own session)
        with App(tmp_path) as second:
            client = Client(second.url, verbose=False)
            text = progress(client, run_id)
            assert "**running**" in text, text
            step = runs.Run(tmp_path / "runs" / run_id).read_status().get("step", 0)
            wait_until(lambda: runs.Run(tmp_path / "runs" / run_id).read_status().get("step", 0) > step,
                       what="steps after the restart")
            assert "queued" in progress(client, waiting_id)  # the queue survived and still waits its turn
            client.predict("", run_id, api_name="/stop")  # the second app controls the worker it re-attached to
            wait_until(lambda: "**completed**" in progress(client, run_id), timeout=300, what="completion")
            wait_until(lambda: "**completed**" in progress(client, waiting_id), timeout=300,
                       what="the queued run")
        first_st = runs.Run(tmp_path / "runs" / run_id).read_status()
        second_st = runs.Run(tmp_path / "runs" / waiting_id).read_status()
        assert first_st["stopped_early"] and step < first_st["step"] < 100000 and second_st["step"] == 4
        assert second_st["started"] >= first_st["finished"]  # one job at a time across the restart
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_machine_restart_marks_the_run_interrupted_and_resume_finishes_it(tiny_model, tmp_path):
    from gradio_client import Client

    with App(tmp_path) as first:
        client, run_id = start_run(first, tiny_model, steps=15)
        run = runs.Run(tmp_path / "runs" / run_id)
        wait_until(lambda: run.last_checkpoint() is not None, what="a checkpoint")
        os.kill(worker_pid(tmp_path, run_id), signal.SIGKILL)  # app and worker both go down
        kill_app(first)
    with App(tmp_path) as second:
        client = Client(second.url, verbose=False)
        text = progress(client, run_id)
        assert "**interrupted**" in text and "ended unexpectedly" in text, text
        client.predict("", run_id, api_name="/resume")
        wait_until(lambda: "**completed**" in progress(client, run_id), timeout=300, what="completion")
    st = run.read_status()
    assert st["step"] == st["total_steps"] == 15
