"""One precision decision (ftspace.models.compute_placement): bfloat16 on CPUs with bfloat16 units, float32 on the
others, a setting forcing either; chat and evaluation follow it (training: tests/test_engine.py)."""

from pathlib import Path

import pytest
import torch

from ftspace import models
from ftspace.errors import ModelError

AMX = frozenset({"avx2", "avx512f", "amx_bf16", "avx512_bf16"})
AVX2 = frozenset({"avx", "avx2", "fma"})


@pytest.fixture
def cpu(monkeypatch):
    """Play a CPU with the given flags (the real flags: whatever this machine has)."""
    monkeypatch.delenv(models.COMPUTE_DTYPE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def play(flags, machine="x86_64"):
        monkeypatch.setattr(models, "cpu_flags", lambda: flags)
        monkeypatch.setattr("platform.machine", lambda: machine)
    return play


def test_bfloat16_where_the_cpu_has_the_units_float32_elsewhere(cpu, monkeypatch):
    cpu(AMX)
    assert models.compute_placement() == ("cpu", torch.bfloat16)
    assert models.precision_text() == "bfloat16 (this CPU has AMX bfloat16 units)"
    assert models.compute_placement("float32") == ("cpu", torch.float32)  # a run's compute_dtype
    monkeypatch.setenv(models.COMPUTE_DTYPE_ENV, "float32")  # the machine's setting
    assert models.compute_placement() == ("cpu", torch.float32)
    assert models.precision_text() == "float32 (compute_dtype forces it)"
    assert models.compute_placement("bfloat16") == ("cpu", torch.bfloat16)  # the run's own setting wins

    monkeypatch.delenv(models.COMPUTE_DTYPE_ENV)
    cpu(AVX2)
    assert models.compute_placement() == ("cpu", torch.float32)
    assert models.precision_text() == "float32 (this CPU has no bfloat16 units: no AMX, AVX-512 BF16 or Arm BF16)"
    assert models.compute_placement("bfloat16") == ("cpu", torch.bfloat16)
    assert "emulates it: slow" in models.precision_text("bfloat16")
    cpu(frozenset({"neon", "bf16"}), "aarch64")
    assert models.compute_placement() == ("cpu", torch.bfloat16)
    cpu(frozenset())  # flags unreadable: not assumed
    assert models.compute_placement() == ("cpu", torch.float32)
    assert "flags unreadable" in models.precision_text()

    monkeypatch.setenv(models.COMPUTE_DTYPE_ENV, "half")
    with pytest.raises(ModelError, match="FTSPACE_COMPUTE_DTYPE='half': use auto, float32 or bfloat16"):
        models.compute_placement()


def test_this_machines_flags_decide(monkeypatch):
    """The decision on the CPU the tests run on, against its flags read here from /proc/cpuinfo (not through the
    code under test): bfloat16 where they name bfloat16 units, float32 where they do not."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64") or not Path("/proc/cpuinfo").exists():
        pytest.skip("reads an x86 Linux CPU's flags")
    monkeypatch.delenv(models.COMPUTE_DTYPE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    line = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    units = {"amx_bf16", "avx512_bf16"} & set(line.split(":", 1)[1].split())
    decided = models.compute_placement()
    print("this CPU:", models.precision_text(), "| torch capability:", torch.backends.cpu.get_cpu_capability())
    if units:
        assert decided == ("cpu", torch.bfloat16), (units, decided)
        assert models.precision_text().startswith("bfloat16 (this CPU has ")
    else:
        assert decided == ("cpu", torch.float32), decided
        assert models.precision_text().startswith("float32 (this CPU has no bfloat16 units")


@pytest.mark.parametrize("setting", ["float32", "bfloat16"])
def test_chat_and_evaluation_compute_in_the_decided_dtype(setting, tiny_model, monkeypatch, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftspace.chat import ChatModel, GenerationSettings
    from ftspace.evaluation import Evaluator

    monkeypatch.setenv(models.COMPUTE_DTYPE_ENV, setting)
    adapter = tmp_path / "adapter"
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model), LoraConfig(r=4, target_modules=["q_proj"])) \
        .save_pretrained(adapter)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(adapter)
    chat = ChatModel.from_adapter(adapter, str(tiny_model))
    assert chat.model.get_base_model().dtype == getattr(torch, setting)
    prompt = [{"role": "user", "content": "Hello"}]
    assert isinstance(chat.reply(prompt, GenerationSettings(max_new_tokens=4)), str)
    assert ChatModel.from_base(str(tiny_model)).model.dtype == getattr(torch, setting)
    evaluator = Evaluator(adapter, str(tiny_model))
    assert evaluator.chat.model.get_base_model().dtype == getattr(torch, setting)
    loss, count = evaluator.loss({"messages": prompt + [{"role": "assistant", "content": "Hi there"}]}, False, 64)
    assert count > 0 and loss == loss  # finite, not NaN


def test_the_train_tab_says_what_a_run_computes_in():
    from ftspace.ui.train_tab import hardware_text

    text = hardware_text()
    assert f"computes in {models.precision_text()}" in text


def test_a_misspelt_machine_setting_is_one_line_on_the_train_tab_and_the_app_still_builds(monkeypatch):
    from ftspace.ui.train_tab import hardware_text

    monkeypatch.setenv(models.COMPUTE_DTYPE_ENV, "fp32")
    assert "FTSPACE_COMPUTE_DTYPE='fp32': use auto, float32 or bfloat16." in hardware_text()
