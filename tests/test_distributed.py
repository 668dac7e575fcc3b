"""Data-parallel training in several processes (torchrun), checked on a CPU with gloo: the same artefacts,
checkpoints, stop and resume as one process, each optimizer step over every process's share of the batch."""

import json

from ftspace import runs
from ftspace.targets import local
from ftspace.config import RunConfig


def config(tiny_model, **extra):
    return RunConfig(model_name=str(tiny_model), dataset="example:facts", max_steps=4, save_steps=2,
                     max_seq_length=64, gradient_checkpointing=False, per_device_train_batch_size=2,
                     gradient_accumulation_steps=1, num_processes=2, **extra)


def events(run):
    return [json.loads(line) for line in run.events_path.read_text().splitlines()]


def test_two_gloo_processes_train_the_same_steps_on_twice_the_examples(tiny_model, runs_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run, _ = local.start(config(tiny_model))
    st = run.wait(timeout=600)
    log = run.log_path.read_text()
    assert st["status"] == "completed" and st["step"] == st["total_steps"] == 4, log[-3000:]
    assert st["processes"] == 2
    # which backend ran is said (Unsloth trains data-parallel here; where it cannot import, the HF backend)
    assert f"data-parallel over 2 processes (gloo, {st['backend']} backend): each optimizer step sees 2 x 1 x 2 = 4 " \
           "examples" in log
    # 32 rows; 4 steps of 2 examples in each of 2 processes = 16 rows: half an epoch (one process: a quarter)
    steps = [e for e in events(run) if "loss" in e]
    assert [e["step"] for e in steps] == [1, 2, 3, 4] and steps[-1]["epoch"] == 0.5
    assert log.count("[ftspace] step 4/4") == 1  # one process speaks and records
    for checkpoint in run.checkpoints():  # whole, with each process's own part
        assert {"rng_state_0.pth", "rng_state_1.pth", "adapter_model.safetensors"} <= {p.name for p in checkpoint.iterdir()}
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), run.adapter_dir)
    assert sum(p.numel() for n, p in model.named_parameters() if "lora_B" in n and p.abs().sum() > 0) > 0


def test_a_stop_ends_every_process_at_the_same_step_and_resume_finishes(tiny_model, runs_dir):
    run = runs.create(config(tiny_model, backend="hf"))
    (run.path / "STOP").touch()  # seen at the end of the first step
    local.launch(run)
    st = run.wait(timeout=600)
    assert st["status"] == "completed" and st["stopped_early"] and st["step"] == 1, run.log_path.read_text()[-3000:]
    assert run.last_checkpoint().name == "checkpoint-1"
    local.resume(run)
    st = run.wait(timeout=600)
    assert st["status"] == "completed" and st["step"] == 4 and not st["stopped_early"], run.log_path.read_text()[-3000:]
    assert [e["step"] for e in events(run) if "loss" in e] == [1, 2, 3, 4]
    assert "resuming from checkpoint-1" in run.log_path.read_text()
