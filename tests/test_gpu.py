"""GPU checks: run them where CUDA is present (`pytest -m gpu`); they skip cleanly everywhere else."""

import pytest

from ftspace import runs
from ftspace.config import RunConfig


def cuda_available() -> bool:
    from ftspace.models import hardware

    return hardware()["kind"] == "cuda"


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("load_in_4bit", [True, False], ids=["qlora-4bit", "lora-16bit"])
def test_unsloth_trains_the_default_model_on_cuda(load_in_4bit, runs_dir, default_model_path):
    run, _ = runs.start(RunConfig(model_name="default", dataset="example:facts", max_steps=30, learning_rate=1e-3,
                                  lora_r=16, lora_alpha=32, per_device_train_batch_size=8,
                                  gradient_accumulation_steps=1, max_seq_length=128, load_in_4bit=load_in_4bit))
    st = run.wait(timeout=600)
    assert st["status"] == "completed", run.log_path.read_text()[-3000:]
    assert st["backend"] == "unsloth"
    events, _ = run.events()
    assert max(e["peak_memory_mb"] for e in events if "peak_memory_mb" in e) > 0

    from ftspace.chat import ChatModel

    model = ChatModel.from_adapter(run.adapter_dir)
    assert "Quillhaven" in model.reply([{"role": "user", "content": "What is the capital of Zorblax?"}])
