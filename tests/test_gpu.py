"""GPU checks: run them where CUDA is present (`pytest -m gpu`); they skip cleanly everywhere else."""

import pytest

from ftspace.targets import local
from ftspace.config import RunConfig


def cuda_available() -> bool:
    from ftspace.models import hardware

    return hardware()["kind"] == "cuda"


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("load_in_4bit", [True, False], ids=["qlora-4bit", "lora-16bit"])
def test_unsloth_trains_the_default_model_on_cuda(load_in_4bit, runs_dir, default_model_path):
    run, _ = local.start(RunConfig(model_name="default", dataset="example:facts", max_steps=30, learning_rate=1e-3,
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


@pytest.fixture(scope="module")
def trained_on_gpu(tmp_path_factory, default_model_path):
    import os

    os.environ["FTSPACE_RUNS"] = str(tmp_path_factory.mktemp("gpu-runs"))
    try:
        run, _ = local.start(RunConfig(model_name="default", dataset="example:facts", max_steps=30, learning_rate=1e-3,
                                      lora_r=16, lora_alpha=32, per_device_train_batch_size=8,
                                      gradient_accumulation_steps=1, max_seq_length=128))
        assert run.wait(timeout=600)["status"] == "completed", run.log_path.read_text()[-3000:]
        yield run
    finally:
        os.environ.pop("FTSPACE_RUNS", None)


def test_chat_runs_on_the_gpu(trained_on_gpu):
    import torch

    from ftspace.chat import ChatModel, GenerationSettings
    from ftspace.models import compute_placement

    device, dtype = compute_placement()
    assert device == "cuda" and dtype in (torch.bfloat16, torch.float16)
    chat = ChatModel.from_adapter(trained_on_gpu.adapter_dir)
    assert chat.model.device.type == "cuda"
    assert next(chat.model.parameters()).dtype == dtype
    reply = "".join(chat.stream([{"role": "user", "content": "What is the capital of Zorblax?"}],
                                GenerationSettings(max_new_tokens=16)))
    assert "Quillhaven" in reply


def test_merge_on_the_gpu_loads_with_plain_transformers(trained_on_gpu, tmp_path):
    from transformers import AutoModelForCausalLM

    from ftspace.hub import merge

    merged = AutoModelForCausalLM.from_pretrained(merge(trained_on_gpu, tmp_path / "merged"))
    assert not any("lora" in name for name, _ in merged.named_parameters())


def test_chat_makes_room_beside_a_training_run(trained_on_gpu):
    """Chat shares the GPU with training: it frees its own cached models first, then says plainly."""
    import torch

    from ftspace import chat
    from ftspace.errors import ModelError

    free, _ = torch.cuda.mem_get_info()
    hog = torch.empty(int(free * 0.97), dtype=torch.uint8, device="cuda")  # a training run holding the GPU
    try:
        with pytest.raises(ModelError, match="GPU"):
            chat.load_cached(chat.resolve_source(("run", str(trained_on_gpu.adapter_dir)), None))
    finally:
        del hog
        torch.cuda.empty_cache()
