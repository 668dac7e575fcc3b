"""Many users on one app: one training job at a time with queue positions; each session sees only its
own runs; chat answers while a run trains."""

import time

import pytest

from apptools import App, progress
from ftspace import runs
from ftspace.config import RunConfig
from ftspace.targets.queue import Scheduler
from test_app import run_values, value_of
from test_engine import wait_until


def cfg(tiny_model, steps):
    return RunConfig(model_name=str(tiny_model), dataset="example:alpaca", max_steps=steps, save_steps=1000,
                     max_seq_length=64, gradient_checkpointing=False, backend="hf")


def test_one_job_at_a_time_with_queue_positions(tiny_model, runs_dir):
    scheduler = Scheduler(slots=1, poll=0.2)
    first = scheduler.submit(cfg(tiny_model, 30), owner="a")
    second = scheduler.submit(cfg(tiny_model, 3), owner="b")
    third = scheduler.submit(cfg(tiny_model, 3), owner="b")
    assert first.read_status()["waiting"] is False
    assert (scheduler.position(first), scheduler.position(second), scheduler.position(third)) == (None, 1, 2)
    assert second.status()["status"] == "queued"  # waiting in the queue is not 'interrupted'
    scheduler.start()
    try:
        deadline = time.time() + 300
        seen_parallel = False
        while time.time() < deadline and not all(r.status()["status"] == "completed" for r in (first, second, third)):
            training = [r for r in (first, second, third) if r.status()["status"] in ("running", "stopping")]
            seen_parallel |= len(training) > 1
            time.sleep(0.1)
        assert [r.status()["status"] for r in (first, second, third)] == ["completed"] * 3
        assert not seen_parallel
        # they ran in submission order
        finished = [r.read_status()["finished"] for r in (first, second, third)]
        assert finished == sorted(finished)
    finally:
        scheduler.shutdown()


def test_cancel_a_waiting_run(tiny_model, runs_dir):
    scheduler = Scheduler(slots=0)  # nothing may start
    run = scheduler.submit(cfg(tiny_model, 3))
    run.request_stop()
    assert run.status()["status"] == "interrupted" and "cancelled" in run.status()["error"]
    assert scheduler.position(run) is None


@pytest.fixture(scope="module")
def shared_app(tmp_path_factory):
    with App(tmp_path_factory.mktemp("multi"), FTSPACE_MULTIUSER="1") as app:
        yield app


def test_sessions_see_and_control_only_their_own_runs(shared_app, tiny_model):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    alice, bob = Client(shared_app.url, verbose=False), Client(shared_app.url, verbose=False)
    run_id = value_of(alice.predict("", *run_values(model_name=str(tiny_model), dataset="example:alpaca",
                                                    max_steps=400, max_seq_length=64), api_name="/start")[0])
    try:
        assert run_id in str(alice.predict("", api_name="/runs"))
        assert run_id not in str(bob.predict("", api_name="/runs"))
        status = bob.predict("", run_id, api_name="/progress")[0]
        assert "No run" in status
        with pytest.raises(AppError, match="No run"):
            bob.predict("", run_id, api_name="/stop")
        with pytest.raises(AppError, match="No run"):
            bob.predict("", "a run of mine", run_id, "default", "", "", 4, 0.0, 0.95, False, "hi", [], [],
                        "its base model", api_name="/chat")
        with pytest.raises(AppError, match="No run"):
            bob.predict("", run_id, "x", False, False, "hf_x", "q8_0", False, api_name="/push")
        with pytest.raises(AppError, match="No run"):
            bob.predict("", run_id, "final", "", 2, 8, "its base model", api_name="/evaluate")
        with pytest.raises(AppError, match="No run"):
            bob.predict("", run_id, "checkpoint-2", api_name="/use_checkpoint")
        with pytest.raises(AppError, match="on this shared app a dataset is"):  # a test set is data too
            alice.predict("", run_id, "final", "/etc/hostname", 2, 8, "its base model", api_name="/evaluate")
        with pytest.raises(AppError, match="not a run id"):
            bob.predict("", "../../etc", api_name="/stop")

        # Bob chats with a base model while Alice's run trains: chat does not wait behind training.
        wait_until(lambda: "running" in progress(alice, run_id), timeout=120, what="alice's run to train")
        tuned, base, _ = bob.predict("", "a base model", None, str(tiny_model), "", "", 4, 0.0, 0.95, False,
                                     "hello", [], [], "its base model", api_name="/chat")
        assert tuned[-1]["role"] == "assistant"
        assert "**running**" in progress(alice, run_id)
    finally:
        alice.predict("", run_id, api_name="/stop")
    wait_until(lambda: "**completed**" in progress(alice, run_id), timeout=120, what="the stopped run to save")
    assert "stopped early" in progress(alice, run_id)


def a_run_training(tiny_model):
    """A long run queued and started, as the app's scheduler would; returned once it trains."""
    first = Scheduler().submit(cfg(tiny_model, 400))
    Scheduler().kick()
    wait_until(lambda: first.status()["status"] == "running", timeout=120, what="the first run to train")
    return first


def cli(args, stderr):
    import os
    import subprocess
    import sys

    from apptools import ROOT

    return subprocess.Popen([sys.executable, "-m", "ftspace", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr,
                            text=True, env=dict(os.environ))


def test_the_cli_waits_for_its_turn_behind_a_run_already_training(tiny_model, runs_dir):
    """An app (or another CLI) training on this machine: `ftspace train` queues behind it, then trains."""
    first = a_run_training(tiny_model)
    stderr = runs_dir.parent / "cli.err"
    with open(stderr, "w") as err:
        proc = cli(["train", "--quiet", "--set", f"model_name={tiny_model}", "--set", "dataset=example:alpaca",
                    "--set", "max_steps=4", "--set", "max_seq_length=64", "--set", "backend=hf"], err)
        wait_until(lambda: "waiting for" in stderr.read_text(), timeout=120, what="the CLI to say it waits")
        assert f"waiting for {first.id} to finish" in stderr.read_text()
        [second] = [r for r in runs.list_runs() if r.id != first.id]
        # The first run trains on (two more steps, while the CLI polls for its turn): the second still waits.
        step = first.status().get("step", 0)
        wait_until(lambda: first.status().get("step", 0) >= step + 2, timeout=120, what="the first run to go on")
        assert second.read_status()["status"] == "queued" and second.read_status()["waiting"]
        assert first.status()["status"] == "running"
        first.request_stop()
        out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and out.strip().endswith(second.id)
    a, b = first.read_status(), second.read_status()
    assert b["status"] == "completed" and b["step"] == 4
    assert b["started"] >= a["finished"]  # never two at once


def test_the_demo_waits_its_turn_too(tiny_model, runs_dir):
    """`ftspace demo` trains through the same one-run-per-machine queue as the app and `ftspace train`."""
    first = a_run_training(tiny_model)
    stderr = runs_dir.parent / "demo.err"
    with open(stderr, "w") as err:
        proc = cli(["demo", "--set", "max_steps=2"], err)
        try:
            wait_until(lambda: f"waiting for {first.id} to finish" in stderr.read_text(), timeout=120,
                       what="the demo to say it waits")
            [demo] = [r for r in runs.list_runs() if r.id != first.id]
            assert demo.read_status()["status"] == "queued" and demo.read_status()["waiting"]
        finally:
            proc.terminate()
            proc.wait(30)
            first.request_stop()
    assert first.wait(timeout=120)["status"] == "completed"


def test_download_files_are_one_per_content_and_bounded(tmp_path, monkeypatch):
    import tempfile

    from ftspace.ui import common

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(common, "SCRATCH_KEEP", 5)
    same = {common.scratch_file("yaml", "run.yaml", b"lora_r: 16\n") for _ in range(3)}
    assert len(same) == 1  # the same YAML three times is one file
    for n in range(20):  # a control changed twenty times
        common.scratch_file("yaml", "run.yaml", f"lora_r: {n}\n".encode())
    assert len(list((tmp_path / "ftspace-yaml").iterdir())) == 5
