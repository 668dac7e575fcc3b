"""Both backends train a tiny random-weight model in a worker process; stop, SIGKILL and resume."""

import json
import os
import signal
import time

import pytest

from ftspace import runs
from ftspace.engine import warm
from ftspace.targets import local
from ftspace.config import RunConfig


def tiny_config(tiny_model, **overrides):
    values = dict(model_name=str(tiny_model), dataset="example:chat", max_steps=6, save_steps=2,
                  per_device_train_batch_size=2, gradient_accumulation_steps=1, max_seq_length=256,
                  learning_rate=5e-3, gradient_checkpointing=False, lora_r=8, lora_alpha=16)
    values.update(overrides)
    return RunConfig(**values)


def wait_until(predicate, timeout=180, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def stopped_after(run, steps: int) -> dict:
    """Stop a started run once it has trained `steps` steps (or ended): its status once it has stopped, which must
    be a completed run stopped early (a stop saves the adapter and a checkpoint)."""
    wait_until(lambda: run.status().get("step", 0) >= steps or run.status()["status"] in runs.FINISHED, timeout=300,
               what=f"{steps} steps")
    run.request_stop()
    st = run.wait(timeout=300)
    assert st["status"] == "completed" and st["stopped_early"], run.log_path.read_text()[-3000:]
    return st


def lora_b_norm(adapter_dir):
    from safetensors.torch import load_file

    weights = load_file(adapter_dir / "adapter_model.safetensors")
    b = [v for k, v in weights.items() if "lora_B" in k]
    assert b, "no LoRA B matrices in the adapter"
    return sum(float(t.float().norm()) for t in b)


@pytest.mark.parametrize("backend", ["unsloth", "hf"])
def test_backend_trains_and_writes_a_stock_peft_adapter(backend, tiny_model, runs_dir):
    run, _ = local.start(tiny_config(tiny_model, backend=backend, validation_size=2, eval_steps=3))
    st = run.wait(timeout=300)
    assert st["status"] == "completed", run.log_path.read_text()[-3000:]
    assert st["backend"] == backend and st["step"] == st["total_steps"] == 6
    # auto precision: what this CPU's flags decide (float32 on a CPU without bfloat16 units), said in the log
    from ftspace.models import cpu_bf16_units, precision_text

    auto = "bfloat16" if cpu_bf16_units() else "float32"
    assert st["compute_dtype"] == st["weights_dtype"] == auto, st
    assert f"computing in {precision_text()}" in run.log_path.read_text()
    # Both start warm (forked from a process with the stack imported), the plain HF path from one that never
    # imported Unsloth, so that Unsloth's patches cannot reach it
    stack = "with Unsloth" if backend == "unsloth" else "without Unsloth"
    assert f"{warm.STARTED_WARM}: forked from a process with the training stack ({stack})" in run.log_path.read_text()

    # LoRA B starts at zero: a non-zero B means the weights were trained.
    assert lora_b_norm(run.adapter_dir) > 0

    events, _ = run.events()
    steps = [e for e in events if "loss" in e]
    assert [e["step"] for e in steps] == [1, 2, 3, 4, 5, 6]
    for e in steps:
        assert {"learning_rate", "grad_norm", "tokens_per_s", "elapsed_s", "eta_s", "peak_memory_mb"} <= set(e)
    assert any("eval_loss" in e for e in events)
    assert RunConfig.from_yaml(run.config_path).backend == backend

    # The artefact loads with stock PEFT and has the tokenizer with its chat template.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    model = PeftModel.from_pretrained(base, str(run.adapter_dir))
    assert model.peft_config["default"].r == 8
    assert AutoTokenizer.from_pretrained(run.adapter_dir).chat_template


@pytest.mark.parametrize("backend", ["unsloth", "hf"])
def test_compute_dtype_forces_the_precision_of_either_backend(backend, tiny_model, runs_dir):
    """The setting overrides the CPU's own choice, for Unsloth (told through UNSLOTH_CPU_BF16, its log agrees)
    and for the HF fallback (weights loaded and autocast in it); the adapter loads with stock PEFT."""
    import math

    from ftspace.models import cpu_bf16_units

    forced = "float32" if cpu_bf16_units() else "bfloat16"  # the opposite of what auto picks here
    run, _ = local.start(tiny_config(tiny_model, backend=backend, compute_dtype=forced, max_steps=3))
    st = run.wait(timeout=300)
    log = run.log_path.read_text()
    assert st["status"] == "completed", log[-3000:]
    assert st["compute_dtype"] == st["weights_dtype"] == forced and f"computing in {forced}" in log
    if backend == "unsloth":
        assert f"dtype = torch.{forced}" in log  # Unsloth's own log line
    # Unsloth's warm process imported it in the other precision: a cold start; the plain HF path starts warm
    assert (warm.STARTED_WARM in log) == (backend == "hf")
    assert math.isfinite(st["train_loss"]) and lora_b_norm(run.adapter_dir) > 0

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(run.adapter_dir))
    assert model.peft_config["default"].r == 8


def test_stop_saves_the_adapter(tiny_model, runs_dir):
    run, _ = local.start(tiny_config(tiny_model, max_steps=500, save_steps=1000, backend="hf"))
    wait_until(lambda: run.status().get("step", 0) >= 2, what="two steps")
    run.request_stop()
    st = run.wait(timeout=120)
    assert st["status"] == "completed" and st["stopped_early"] is True
    assert 2 <= st["step"] < 500
    assert (run.adapter_dir / "adapter_model.safetensors").exists()
    assert run.last_checkpoint() is not None  # a stopped run can be resumed
    with pytest.raises(Exception, match="not running"):
        run.request_stop()


def test_sigkill_leaves_interrupted_and_resume_finishes_the_same_steps(tiny_model, runs_dir):
    run, proc = local.start(tiny_config(tiny_model, max_steps=20, save_steps=4, backend="hf"))
    wait_until(lambda: run.last_checkpoint() is not None and run.status().get("step", 0) >= 6,
               what="a checkpoint")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    st = run.status()
    assert st["status"] == "interrupted", st
    assert run.read_status()["status"] == "running"  # reading the status writes nothing
    assert run.record_if_gone()["status"] == "interrupted"
    assert run.read_status()["status"] == "interrupted"  # recorded by the one that says so
    resume_to_the_end(run, total=20)


def resume_to_the_end(run, total):
    """Resume from the last complete checkpoint; exactly the missing steps are trained, and saved."""
    resumed_from = int(run.last_checkpoint().name.split("-")[1])
    local.resume(run)
    st = run.wait(timeout=300)
    assert st["status"] == "completed", run.log_path.read_text()[-3000:]
    assert st["step"] == st["total_steps"] == total
    assert f"resuming from checkpoint-{resumed_from}" in run.log_path.read_text()
    steps = [e["step"] for e in run.events()[0] if "loss" in e]
    assert steps[-(total - resumed_from):] == list(range(resumed_from + 1, total + 1))
    assert (run.adapter_dir / "adapter_model.safetensors").exists()


def test_failed_run_records_a_one_line_error(tiny_model, runs_dir):
    run, _ = local.start(tiny_config(tiny_model, target_modules=["nonexistent_proj"], backend="hf"))
    st = run.wait(timeout=120)
    assert st["status"] == "failed"
    assert "None of target_modules" in st["error"] and "\n" not in st["error"]


def test_listing_and_lookup(tiny_model, runs_dir):
    assert runs.list_runs() == []
    cfg = tiny_config(tiny_model)
    run = runs.create(cfg)
    assert [r.id for r in runs.list_runs()] == [run.id]
    assert runs.get(run.id).path == run.path
    with pytest.raises(Exception, match="not a run id"):
        runs.get("../etc")
    with pytest.raises(Exception, match="No run"):
        runs.get("nope")
    summary = run.summary()
    assert summary["status"] == "queued" and summary["lora_r"] == cfg.lora_r
    assert json.loads((run.path / "status.json").read_text())["status"] == "queued"


def test_cpu_loss_matches_log_softmax_and_its_gradient(monkeypatch):
    import torch

    from ftspace.engine import cpu_loss

    monkeypatch.setattr(cpu_loss, "CHUNK_ELEMENTS", 3 * 50)  # force several chunks of 3 rows
    torch.manual_seed(0)
    hidden = torch.randn(7, 16, requires_grad=True)
    weight = torch.randn(50, 16, requires_grad=True)
    targets = torch.randint(0, 50, (7,))
    log_probs, entropy, _, _, top1 = cpu_loss.chunked_log_probs(
        hidden, weight, None, targets, 1.0, None, None, 1.0, ("log_probs", "entropy", "is_top1"))
    logits = hidden @ weight.t()
    expected = torch.log_softmax(logits, -1).gather(-1, targets[:, None]).squeeze(-1)
    assert torch.allclose(log_probs, expected, atol=1e-5)
    assert torch.equal(top1, logits.argmax(-1) == targets)
    p = torch.softmax(logits, -1)
    assert torch.allclose(entropy, -(p * p.log()).sum(-1), atol=1e-4)
    log_probs.sum().backward()
    got = hidden.grad.clone()
    hidden.grad = None
    expected_h = hidden.detach().clone().requires_grad_()
    torch.log_softmax(expected_h @ weight.detach().t(), -1).gather(-1, targets[:, None]).sum().backward()
    assert torch.allclose(got, expected_h.grad, atol=1e-5)
    empty = cpu_loss.chunked_log_probs(hidden[:0], weight, None, targets[:0], 1.0)
    assert empty[0].shape == (0,) and empty[1] is None


def test_auto_backend_falls_back_to_hf_when_unsloth_cannot_import(monkeypatch):
    from ftspace.engine import backends
    from ftspace.errors import ModelError

    monkeypatch.setattr(backends, "import_unsloth", lambda: "ImportError: no GPU driver")
    notes = []
    assert backends.choose("auto", notes.append) == "hf"
    assert "Unsloth is not available here (ImportError: no GPU driver)" in notes[0]
    with pytest.raises(ModelError, match="set backend to auto or hf"):
        backends.choose("unsloth", notes.append)
    assert backends.choose("hf", notes.append) == "hf"


def test_estimate_uses_a_measured_step_time(tiny_model, runs_dir):
    from ftspace.models import estimate

    cfg = tiny_config(tiny_model, max_steps=4, backend="hf")
    assert "seconds" not in estimate(cfg, 8, runs.measured_step_seconds(cfg), model_path=str(tiny_model))
    run, _ = local.start(cfg)
    assert run.wait(timeout=300)["status"] == "completed"
    seconds = runs.measured_step_seconds(cfg)
    assert seconds and seconds > 0
    est = estimate(cfg, 8, seconds, model_path=str(tiny_model))
    assert est["steps"] == 4 and est["seconds"] == round(4 * seconds, 1)


def test_a_checkpoint_cut_short_is_passed_over(tiny_model, runs_dir):
    run = runs.create(tiny_config(tiny_model))
    for step, state in [(4, '{"global_step": 4}'), (8, '{"global_step": 8}'), (12, '{"global_st'), (16, None)]:
        path = run.checkpoints_dir / f"checkpoint-{step}"
        path.mkdir(parents=True)
        if state is not None:
            (path / "trainer_state.json").write_text(state)
    (run.checkpoints_dir / "checkpoint-tmp").mkdir()
    assert run.last_checkpoint().name == "checkpoint-8"


def test_a_warm_start_needs_the_same_environment_but_for_ftspaces_own_settings(monkeypatch):
    started = {"HF_HOME": "/a", "PATH": "/bin", "FTSPACE_RUNS": "/runs-1", "PYTEST_CURRENT_TEST": "x (call)"}
    imported = {**started, "TORCHINDUCTOR_CACHE_DIR": "/tmp/inductor"}  # set by a library when imported
    same = {**started, "FTSPACE_RUNS": "/runs-2", "FTSPACE_TEST_PROCESS": "1", "PYTEST_CURRENT_TEST": "y (setup)"}
    assert warm.same_environment(same, started, imported)  # ftspace reads its own when used: the launch's count
    assert warm.same_environment({**same, "TORCHINDUCTOR_CACHE_DIR": "/tmp/inductor"}, started, imported)
    assert not warm.same_environment({**same, "TORCHINDUCTOR_CACHE_DIR": "/elsewhere"}, started, imported)
    assert not warm.same_environment({**started, "HF_HOME": "/b"}, started, imported)  # read when imported
    assert not warm.same_environment({**started, "HF_TOKEN": "hf_x"}, started, imported)
    assert not warm.same_environment({k: v for k, v in started.items() if k != "PATH"}, started, imported)
    monkeypatch.setenv("FTSPACE_WARM_START", "0")
    assert local.warm_start(local.worker_environment()) is None  # turned off: every worker starts cold


def test_processes_needing_the_default_model_at_once_convert_it_once(tmp_path, monkeypatch):
    """The bundled GGUF is converted by the first caller; one that asks meanwhile waits on the lock and finds it
    done (the suite's two test processes share one conversion this way; so do an app and a CLI). The real
    conversion's output is the conftest's `default_model_path`, used by every real-model test."""
    import threading

    from ftspace import models

    target = tmp_path / "shared" / "SmolLM2-135M-Instruct"
    (tmp_path / "cache" / "models").mkdir(parents=True)
    (tmp_path / "shared").mkdir()
    (tmp_path / "cache" / "models" / target.name).symlink_to(target)  # as the conftest links it: written through
    monkeypatch.setenv("FTSPACE_CACHE", str(tmp_path / "cache"))
    calls, results = [], []

    def convert(folder, progress):
        calls.append(folder)
        time.sleep(0.5)  # a second caller arrives meanwhile
        folder.mkdir()
        for name in ("model.safetensors", "tokenizer_config.json"):
            (folder / name).write_text("x")

    monkeypatch.setattr(models, "_convert_default", convert)
    threads = [threading.Thread(target=lambda: results.append(models.ensure_default_model(lambda *_: None)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert calls == [target] and results == [models.default_model_dir()] * 2 and models.default_model_ready()


def test_validation_rows_are_held_out_by_default_where_the_data_allows_it(tiny_model, runs_dir, tmp_path):
    """validation_size's default is automatic: 10% of 120 rows held out, none of 40 (the run's log says which, and
    how to hold some out anyway); a GRPO run holds out none (it has no validation loss)."""
    from ftspace.engine.prepare import prepare

    rows = [json.dumps({"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                                     {"role": "assistant", "content": str(2 * i)}]}) for i in range(120)]
    for n, held in ((120, 12), (40, 0)):
        path = tmp_path / f"rows{n}.jsonl"
        path.write_text("\n".join(rows[:n]) + "\n")
        run = runs.create(tiny_config(tiny_model, dataset=str(path)))
        said = []
        info = prepare(run, None, log=said.append)
        assert info["split"]["validation"] == info["eval_rows"] == held and info["train_rows"] == n - held
        assert len((run.path / "prepared" / "eval.jsonl").read_text().splitlines()) == held
        line = next(line for line in said if line.startswith("validation: "))
        assert (f"{held} of {n} rows held out" in line) if held else ("none held out" in line and
                                                                       "set validation_size" in line), line
        # and before it trains, the estimate says what a small upload costs in general answers (40 rows, not 120)
        from ftspace.planning import describe, plan

        est = plan(run.config().to_dict())
        assert est["train_rows"] == n - held and est["small_upload"] == (n < 100)
        assert (f"A small upload ({n} rows) changes some general answers" in describe(est)) == (n < 100)
    assert RunConfig(method="grpo", dataset="example:arithmetic").validation_size == 0
