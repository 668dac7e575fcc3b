"""The ZeroGPU path on CPU, off a Space (spaces.GPU is a no-op here): slicing, durations, refusals, the
page closing mid-run, and the Unsloth-first import order. tests/test_space.py runs the real wrapper."""

import json
import os
import subprocess
import sys

import pytest

from apptools import ROOT
from ftspace import env, runs
from ftspace.targets import zerogpu
from ftspace.targets import local
from ftspace.config import RunConfig


def config(tiny_model, **overrides):
    return RunConfig(**{**dict(model_name=str(tiny_model), dataset="example:alpaca", max_steps=12, save_steps=100,
                               per_device_train_batch_size=2, gradient_accumulation_steps=2, max_seq_length=128,
                               gradient_checkpointing=False, backend="auto"), **overrides})


def sliced(run, cap_s: int) -> dict:
    """run_sliced in a fresh process that imported Unsloth first (as a ZeroGPU Space's worker has after its first
    call)."""
    code = ("import json, sys; from ftspace.engine import backends; backends.import_unsloth(); "
            "from ftspace.targets.zerogpu import run_sliced; print(json.dumps(run_sliced(sys.argv[1])))")
    out = subprocess.run([sys.executable, "-c", code, str(run.path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, env={**__import__("os").environ, "FTSPACE_ZEROGPU_MAX_CALL_S": str(cap_s),
                                           "FTSPACE_SAVE_MARGIN_S": "0.5"})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_sliced_run_ends_where_an_unsliced_one_does_with_the_same_weights(tiny_model, runs_dir):
    from test_space import assert_same_weights

    run = runs.create(config(tiny_model))
    # 2 s calls, in a process that imported Unsloth already (a reused worker): each trains a few steps. (Shorter calls
    # are refused: the load, a step and the save must fit: test_a_model_that_loads_for_longer_than_a_call...)
    status = sliced(run, cap_s=2)
    slices = [e for e in run.events()[0] if e.get("slice")]
    assert status["status"] == "completed", status
    assert len(slices) >= 2, f"2 s calls should need several, got {len(slices)}"
    assert status["slice"] == len(slices) and status["backend"] == "unsloth"
    assert all(e["load_s"] > 0 and e["train_s"] > 0 for e in slices)
    assert [e["step"] for e in run.events()[0] if "loss" in e] == list(range(1, 13))  # each step once

    plain, _ = local.start(config(tiny_model))
    plain_status = plain.wait(timeout=300)
    assert plain_status["status"] == "completed"
    assert (status["step"], status["total_steps"]) == (plain_status["step"], plain_status["total_steps"]) == (12, 12)
    assert status["train_loss"] == pytest.approx(plain_status["train_loss"], rel=1e-5)
    assert_same_weights(run.adapter_dir, plain.adapter_dir)


def quota_error():
    import gradio as gr

    return gr.Error("You have exceeded your free ZeroGPU quota (60s requested vs. 23s left). Try again in 2:31:00. ",
                    title="ZeroGPU quota exceeded")


def test_out_of_quota_keeps_a_resumable_run(tiny_model, runs_dir, monkeypatch):
    run = runs.create(config(tiny_model))
    calls = []

    def refuse(run_dir, seconds):
        calls.append(seconds)
        raise quota_error()

    monkeypatch.setattr(zerogpu, "train_slice", refuse)
    status = zerogpu.run_sliced(str(run.path), tier="free")
    # Asked once more at the 23 s the message says are left (enough to train in), then not again.
    assert status["status"] == "interrupted" and calls == [120, 23]
    assert "exceeded your free ZeroGPU quota" in status["error"]
    assert "comes back in 2 h 31 min" in status["error"] and "press Resume" in status["error"]
    runs.prepare_resume(run)  # no exception: it can be resumed when quota is back


def test_busy_gpus_are_retried_then_reported(tiny_model, runs_dir, monkeypatch):
    import gradio as gr

    monkeypatch.setattr(zerogpu, "RETRY_DELAYS_S", (0.01, 0.01))
    attempts = []

    def busy(run_dir, seconds):
        attempts.append(seconds)
        raise gr.Error("No GPU was available", title="ZeroGPU client error")

    monkeypatch.setattr(zerogpu, "train_slice", busy)
    run = runs.create(config(tiny_model))
    status = zerogpu.run_sliced(str(run.path))
    assert len(attempts) == 3 and status["status"] == "interrupted"
    assert "No GPU was available" in status["error"] and "Resume" in status["error"]


def test_a_closed_page_pauses_the_run_and_frees_the_queue(tiny_model, runs_dir):
    run = runs.create(config(tiny_model))
    driving = zerogpu.drive(run, None, "anonymous")
    next(driving)  # prepared on CPU; the first GPU call would come next
    assert run.status()["status"] == "running" and run.worker_alive()
    driving.close()  # what Gradio does when the visitor's page goes away
    st = run.status()
    assert st["status"] == "interrupted" and "press Resume" in st["error"]
    assert not (run.path / "worker.json").exists()
    runs.prepare_resume(run)


def test_an_abandoned_driver_lease_runs_out(tiny_model, runs_dir, monkeypatch):
    run = runs.create(config(tiny_model))
    run.set_status(status="running", waiting=False)
    zerogpu.lease(run, 60)
    assert run.status()["status"] == "running"
    zerogpu.lease(run, -1)  # the driver stopped renewing: it is gone, whatever the pid says
    assert run.status()["status"] == "interrupted"


@pytest.mark.parametrize("tier", ["anonymous", "free", "pro"])
def test_call_durations_fit_the_tier_and_the_node_factor(tier, monkeypatch):
    cap = zerogpu.TIERS[tier].max_call_s
    assert cap <= zerogpu.TIERS[tier].daily_quota_s / 2  # a call never asks for a whole day's quota
    for factor in (1.0, 1.5):  # spaces scales durations by 1.5 on RTX PRO nodes before asking
        monkeypatch.setattr(zerogpu, "duration_factor", lambda: factor)
        for work in (0, 5, 30, 200, 10_000, float("inf")):
            asked = zerogpu.call_seconds(tier, work) * factor
            assert asked <= cap
        assert zerogpu.call_seconds(tier, 30) * factor >= min(30, cap) - 1  # sized to the work, not the cap
    monkeypatch.setenv("FTSPACE_ZEROGPU_MAX_CALL_S", "12")
    assert zerogpu.call_seconds(tier, float("inf")) == 8  # 12 s on a 1.5x node
    monkeypatch.setattr(zerogpu, "duration_factor", lambda: 1.0)
    assert zerogpu.call_seconds(tier, float("inf")) == 12


def test_work_left_is_measured_from_the_run(tiny_model, runs_dir):
    run = runs.create(config(tiny_model))
    assert zerogpu.training_work_s(run) == float("inf")  # nothing measured: as long as allowed
    with open(run.events_path, "w") as fh:
        for step in (1, 2, 3):
            fh.write(json.dumps({"step": step, "loss": 1.0, "elapsed_s": 2.0 * step}) + "\n")
        fh.write(json.dumps({"slice": True, "step": 3, "load_s": 7.0, "train_s": 6.0}) + "\n")
    run.set_status(step=3, total_steps=13)
    assert zerogpu.training_work_s(run) == pytest.approx(7.0 + 12 * 2.0 + zerogpu.SAVE_MARGIN_S)  # 10 steps left, sized for 12


def test_the_step_time_is_taken_per_call_whose_clock_restarts(tiny_model, runs_dir):
    """Each GPU call's worker restarts `elapsed_s`: a later call's steps are never measured against the first
    call's (which made the work left shrink to nothing and calls shrink to the minimum)."""
    run = runs.create(config(tiny_model))
    events = []
    for call, start in enumerate((1000.0, 1100.0)):  # two calls, 3 steps each, 4 s a step, a fresh clock each
        events += [{"step": 3 * call + k, "loss": 1.0, "elapsed_s": 4.0 * k, "time": start + 4.0 * k} for k in (1, 2, 3)]
        events.append({"slice": True, "step": 3 * call + 3, "load_s": 9.0, "train_s": 12.0, "time": start + 13})
    run.events_path.write_text("".join(json.dumps(e) + "\n" for e in events))
    run.set_status(step=6, total_steps=16)
    assert runs.step_seconds(run.events()[0]) == pytest.approx(4.0)
    assert zerogpu.training_work_s(run) == pytest.approx(9.0 + 12 * 4.0 + zerogpu.SAVE_MARGIN_S)
    assert runs.measured_step_seconds(run.config()) == pytest.approx(4.0)  # the Train tab's estimate too


def test_a_gpu_call_trains_offline_without_unsloths_statistics_fetch(tiny_model, runs_dir, monkeypatch):
    from huggingface_hub import constants

    from ftspace.engine import worker

    seen = {}

    def execute(run, resume, deadline, started):
        seen.update({k: os.environ.get(k) for k in zerogpu.OFFLINE_ENV}, constant=constants.HF_HUB_OFFLINE)
        return "sliced"

    monkeypatch.setattr(worker, "execute", execute)
    monkeypatch.delenv("UNSLOTH_DISABLE_STATISTICS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    run = runs.create(config(tiny_model))
    assert zerogpu.train_slice(str(run.path), 30) == "sliced"
    assert seen == {"UNSLOTH_DISABLE_STATISTICS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "HF_DATASETS_OFFLINE": "1", "constant": True}
    # Off a Space the call ran in this process: everything is as it was.
    assert "UNSLOTH_DISABLE_STATISTICS" not in os.environ and os.environ["HF_HUB_OFFLINE"] == "0"
    assert constants.HF_HUB_OFFLINE is False


def test_a_model_that_loads_for_longer_than_a_call_is_refused_before_the_next_call(tiny_model, runs_dir,
                                                                                  monkeypatch):
    run = runs.create(config(tiny_model))
    run.events_path.write_text("".join(json.dumps(e) + "\n" for e in (
        {"step": 1, "loss": 1.0, "elapsed_s": 1.0, "time": 101.0}, {"step": 2, "loss": 1.0, "elapsed_s": 2.0, "time": 102.0},
        {"slice": True, "step": 1, "load_s": 59.0, "train_s": 1.0},  # two calls, 58-59 s each before a step
        {"slice": True, "step": 2, "load_s": 58.0, "train_s": 1.0})))
    run.set_status(step=2, total_steps=12)
    calls = []
    monkeypatch.setattr(zerogpu, "train_slice", lambda *a: calls.append(a) or "sliced")
    driving = zerogpu.drive(run, None, "anonymous", prepare=False)
    next(driving)
    with pytest.raises(StopIteration):
        next(driving)
    st = run.status()
    assert calls == [] and st["status"] == "interrupted"
    assert st["error"].startswith("This model does not fit a ZeroGPU call of your tier: a call spends at least 58 s")
    assert "60 s a call may last (sign in for 120 s calls" in st["error"]
    # The free tier's 120 s calls fit it: the call is made.
    assert zerogpu.fixed_cost_refusal(run, "free") is None


def test_a_call_ended_by_zerogpu_or_an_expired_token_says_so_and_the_next_call_asks_for_more(tiny_model, runs_dir,
                                                                                            monkeypatch):
    import gradio as gr

    def drive_all(run):  # prepared already (nothing to download): the calls only
        for _ in zerogpu.drive(run, None, "free", prepare=False):
            pass
        return run.status()

    run = runs.create(config(tiny_model))
    asked = []

    def aborted(run_dir, seconds):
        asked.append(seconds)
        raise gr.Error("GPU task aborted", title="ZeroGPU worker error")

    monkeypatch.setattr(zerogpu, "train_slice", aborted)
    run.events_path.write_text("".join(json.dumps({"step": s, "loss": 1.0, "elapsed_s": 0.5 * s}) + "\n"
                                       for s in (1, 2)) + json.dumps({"slice": True, "step": 2, "load_s": 3.0}) + "\n")
    run.set_status(step=2, total_steps=12)
    st = drive_all(run)
    assert asked == [zerogpu.MIN_CALL_S]  # sized to the work measured: 3 s + 10 steps + the save, at least 20
    assert st["status"] == "interrupted" and st["error"].startswith(
        "GPU call 1 was ended by ZeroGPU: it ran past the 20 s it asked for. Resume the run")
    drive_all(run)
    assert asked[1] == zerogpu.TIERS["free"].max_call_s  # after an abort: as long as the tier allows
    # That call, as long as the tier allows, ended before a step: the next is refused before it is made; a PRO
    # account's longer calls are not.
    assert drive_all(run)["error"].startswith("This model does not fit a ZeroGPU call of your tier: a 120 s call "
                                              "ended before it had loaded the model and trained a step")
    assert len(asked) == 2 and zerogpu.fixed_cost_refusal(run, "pro") is None
    run.set_status(load_exceeds_s=None)

    def expired(run_dir, seconds):
        raise gr.Error("Expired ZeroGPU proxy token", title="ZeroGPU client error")

    monkeypatch.setattr(zerogpu, "train_slice", expired)
    st = drive_all(run)
    assert st["status"] == "interrupted" and st["token_expired"]  # the page asks again (test_space)
    assert "ZeroGPU sign-in token expired. The page asks again with a fresh one; if the run stays interrupted, " \
        "reload the page and press Resume" in st["error"]


def test_refusals_are_told_apart():
    import gradio as gr

    assert zerogpu.zerogpu_refusal(quota_error()) == "quota"
    assert zerogpu.zerogpu_refusal(gr.Error("The requested GPU duration (900s) is larger than the maximum allowed",
                                            title="ZeroGPU illegal duration")) == "quota"
    assert zerogpu.zerogpu_refusal(gr.Error("No GPU was available after 60s. Retry later",
                                            title="ZeroGPU queue timeout")) == "busy"
    assert zerogpu.zerogpu_refusal(RuntimeError("CUDA out of memory")) is None


def test_unsloth_refuses_a_process_that_imported_transformers_first():
    code = ("import transformers; from ftspace.engine import backends; print(backends.import_unsloth())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "transformers was imported before unsloth" in out.stdout, out.stderr[-2000:]


def test_gpu_functions_touch_no_cuda_at_import():
    code = "import sys, ftspace.targets.zerogpu; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_runs_live_on_a_spaces_persistent_storage(tmp_path, monkeypatch):
    from ftspace.ui.train_tab import hardware_text

    monkeypatch.delenv("FTSPACE_RUNS", raising=False)
    monkeypatch.setenv("SYSTEM", "spaces")
    monkeypatch.setenv("SPACE_ID", "someone/ftspace")
    monkeypatch.setenv("FTSPACE_PERSISTENT_DIR", str(tmp_path / "data"))
    from pathlib import Path

    assert env.runs_root() == Path("runs").resolve()  # no /data: the working folder, and a warning
    assert "No persistent storage" in hardware_text()
    (tmp_path / "data").mkdir()
    assert env.runs_root() == tmp_path / "data" / "ftspace" / "runs"
    assert "No persistent storage" not in hardware_text()


def test_a_run_whose_page_left_the_queue_does_not_block_it(tiny_model, runs_dir, monkeypatch):
    from ftspace.targets.queue import Scheduler

    monkeypatch.setenv("SPACES_ZERO_GPU", "true")  # ZeroGPU's queue rules (spaces itself is already imported)
    scheduler = Scheduler()
    first, second = scheduler.submit(config(tiny_model)), scheduler.submit(config(tiny_model))
    assert scheduler.position(first) == 1 and scheduler.claim(second) == 2  # second waits behind first
    first.set_status(waiting_until=0)  # first's page went away and stopped renewing its place
    assert scheduler.claim(second) == 0  # so second's turn has come
    assert first.status()["status"] == "interrupted" and "press Resume" in first.status()["error"]
    runs.prepare_resume(first)


def test_an_error_inside_a_gpu_call_reaches_the_visitor_as_its_own_line(tiny_model, runs_dir, monkeypatch):
    """`spaces` would show only "DataError": ftspace's errors cross the fork as values and are raised again."""
    from ftspace import errors, evaluation, targets

    run = runs.create(config(tiny_model))
    options = evaluation.EvalOptions()
    items = list(zerogpu.evaluate_on_gpu(str(run.path), vars(options), None, "free"))  # what the fork sends back
    assert items == [zerogpu.CarriedError("DataError", items[0].message)]
    assert items[0].message.startswith(f"Run {run.id} has no test rows: train with test_size")
    with pytest.raises(errors.DataError, match=f"^Run {run.id} has no test rows: train with test_size"):
        list(zerogpu.carried(iter(items)))
    # An unknown kind still arrives as an ftspace error with its message; items before it pass through.
    assert list(zerogpu.carried(iter([1, 2]))) == [1, 2]
    with pytest.raises(errors.FtspaceError, match="^kept"):
        list(zerogpu.carried(iter([zerogpu.CarriedError("NoSuchError", "kept")])))
    # On ZeroGPU the check needs no GPU: it is made on the CPU before one is asked for (nothing is scheduled).
    monkeypatch.setattr(targets.env, "on_zerogpu", lambda: True)
    with pytest.raises(errors.DataError, match="has no test rows"):
        targets.evaluation_updates(run, options, targets.Caller("user:alice"), "free")  # raised here, not lazily


def test_a_chat_call_measures_its_load_and_the_next_call_is_sized_by_it(tiny_model, monkeypatch):
    from ftspace.chat import resolve_source

    monkeypatch.setattr(zerogpu, "CHAT_LOADS", [])
    source = resolve_source(("base", str(tiny_model)), None)
    settings = {"max_new_tokens": 4, "temperature": 0.0, "top_p": 0.95}
    assert zerogpu._chat_seconds(source, [], None, {"max_new_tokens": 100}, "free") == 25  # 20 s guessed + 100 tokens
    raw = list(zerogpu.chat_on_gpu(source, [{"role": "user", "content": "hi"}], None, settings, "free"))  # the fork's
    assert isinstance(raw[0], zerogpu.Loaded) and raw[1:] and all(isinstance(pair, tuple) for pair in raw[1:])
    assert list(zerogpu.carried(iter(raw))) == raw[1:]  # the app process sees the replies only,
    assert zerogpu.CHAT_LOADS == [raw[0].seconds]  # and keeps the measured load for the next call's size
    zerogpu.CHAT_LOADS[:] = [31.0, 4.0]  # a fresh fork's load, then a reused one's: the most is budgeted
    assert zerogpu._chat_seconds(source, [], [], {"max_new_tokens": 100}, "free") == 41  # 31 s + 2 replies x 5 s
    # another run side by side: its model is loaded in the same call (budgeted), and the second reply is its own
    assert zerogpu._chat_seconds(source, [], [], {"max_new_tokens": 100}, "free", source) == 72  # 2 x 31 s + 10 s
    from ftspace.chat import GenerationSettings, load_cached

    prompt = [{"role": "user", "content": "hi"}]
    *_, (first, second) = zerogpu.carried(zerogpu.chat_on_gpu(source, prompt, prompt, settings, "free", source))
    assert first == second and second.strip() == load_cached(source).reply(prompt, GenerationSettings(**settings))


def test_a_call_stops_before_a_last_step_whose_final_evaluation_and_save_would_not_fit(tiny_model, runs_dir,
                                                                                        monkeypatch):
    """The deadline counts what follows a step: the checkpoint's save, or after the run's last step its final
    evaluation and the adapter's save (which a call cut short there would lose)."""
    import time

    from ftspace.engine import callbacks

    monkeypatch.setattr(callbacks, "SAVE_MARGIN_S", 2.0)
    run = runs.create(config(tiny_model))

    def callback(final_eval_rows):
        progress = callbacks.ProgressCallback(run, run.config(), "unsloth", deadline=time.time() + 20,
                                              final_eval_rows=final_eval_rows)
        progress.step_end = time.time() - 1.0  # the step just ended took 1 s
        return progress

    assert not callback(40)._no_time_for_another_step(last=False, rows_per_step=4)  # 1 s + 2 s save: fits in 20 s
    assert not callback(0)._no_time_for_another_step(last=True, rows_per_step=4)  # no evaluation after it: fits
    # 80 evaluation rows at 4 a step ~ 20 steps' time, and two saves: 1 + 2 + 20 + 2 s > the 20 s left
    assert callback(80)._no_time_for_another_step(last=True, rows_per_step=4)
    assert not callback(8)._no_time_for_another_step(last=True, rows_per_step=4)  # 1 + 2 + 2 + 2 fits
