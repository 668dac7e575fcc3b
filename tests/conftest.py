"""Shared fixtures: every run, cache and Hub lookup points at tmp paths; the Hub is offline."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
import sys
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Put on a child process's PYTHONPATH by the tests that need it; not test modules of their own.
collect_ignore = ["zerogpu_shim/sitecustomize.py"]

SESSION_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="session", autouse=True)
def offline_env(tmp_path_factory):
    """Offline Hub, HF caches under tmp; the default model converted once per session under tmp."""
    base = tmp_path_factory.mktemp("env")
    old = dict(os.environ)
    os.environ.update(SESSION_ENV, HF_HOME=str(base / "hf"), FTSPACE_CACHE=str(base / "ftspace-cache"))
    # The converted default checkpoint is deterministic and read-only: reuse one from the user
    # cache when present (saves ~30 s), else convert into this session's tmp cache.
    shared = Path.home() / ".cache" / "ftspace" / "models" / "SmolLM2-135M-Instruct"
    if (shared / "model.safetensors").exists():
        (base / "ftspace-cache" / "models").mkdir(parents=True)
        os.symlink(shared, base / "ftspace-cache" / "models" / "SmolLM2-135M-Instruct")
    yield
    os.environ.clear()
    os.environ.update(old)


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    path = tmp_path / "runs"
    monkeypatch.setenv("FTSPACE_RUNS", str(path))
    return path


@pytest.fixture(scope="session")
def default_model_path():
    from ftspace.models import ensure_default_model

    return ensure_default_model(progress=lambda *_: None)


@pytest.fixture(scope="session")
def smol_tokenizer(default_model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_model_path)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, default_model_path, smol_tokenizer):
    """A 2-layer random-weight Llama with the real SmolLM2 tokenizer and chat template."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(smol_tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True,
                         bos_token_id=1, eos_token_id=2, pad_token_id=2)
    LlamaForCausalLM(config).save_pretrained(path)
    smol_tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def write(tmp_path):
    """write('name.jsonl', text_or_bytes) -> path"""

    def _write(name, content):
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return path

    return _write
