"""Dependency chatter stays in log files: the CLI's stderr and the app's log panel show our own lines."""

import subprocess
import sys

from apptools import ROOT

CHATTER = [
    "W1122 05:10:51.505000 21380 .venv/lib/python3.11/site-packages/torch/utils/_pytree.py:630] <enum "
    "'KernelPreference'> is an Enum subclass and is now natively supported by torch.compile",
    "Failed to load /x/.venv/lib/python3.11/site-packages/torchao/_C_mxfp8.cpython-310-x86_64-linux-gnu.so: "
    "Could not load this library",
    "[bitsandbytes.backends.cpu.ops|WARNING]Failed to load CPU gemm_4bit_forward from kernels-community",
    "Saving the dataset (0/1 shards):   0%|          | 0/32 [00:00<?, ? examples/s]",
    "Loading weights: 100%|██████████| 20/20 [00:00<00:00, 3128.91it/s]",
]
OURS = ["[ftspace 05:10:53] loading default with the unsloth backend", "[ftspace] step 3/30 loss 2.1, ETA 40s",
        "Traceback (most recent call last):", "RuntimeError: something our user must see"]


def test_the_log_panel_shows_our_lines_only(tmp_path):
    from ftspace.ui.common import log_tail

    log = tmp_path / "log.txt"
    log.write_text("\n".join(CHATTER[:2] + OURS[:2] + CHATTER[2:] + OURS[2:]) + "\n")
    assert log_tail(log).splitlines() == OURS


def test_the_cli_imports_the_stack_quietly(tmp_path):
    """Importing torch, transformers and peft prints torchao's and torch's warnings; through quiet.preload
    they go to the library log (asserted present there, so this test fails if the redirect does nothing)."""
    code = "from ftspace import quiet; quiet.preload(); import transformers; print('ready')"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
                              "FTSPACE_LIBRARY_LOG": str(tmp_path / "library.log")})
    assert out.returncode == 0 and out.stdout == "ready\n", out.stderr[-2000:]
    assert out.stderr == ""
    kept = (tmp_path / "library.log").read_text()
    assert "torchao" in kept or "_pytree" in kept, kept[:2000]


def test_no_sequence_length_warning_from_our_tokenizers(smol_tokenizer):
    """transformers warns "Token indices sequence length is longer than ..." on a long example; our report
    already counts those rows, so a tokenizer that went through set_chat_template never says it."""
    import copy
    import logging

    from transformers.utils import logging as hf_logging

    from ftspace.data.tokenize import set_chat_template, tokenize_example

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = hf_logging.get_logger("transformers.tokenization_utils_base")
    logger.addHandler(handler)
    try:
        long = {"messages": [{"role": "user", "content": "word " * (smol_tokenizer.model_max_length + 10)},
                             {"role": "assistant", "content": "ok"}]}
        plain = copy.deepcopy(smol_tokenizer)
        plain(long["messages"][0]["content"])  # the warning exists (so this test can fail) ...
        assert any("Token indices sequence length" in r.getMessage() for r in records)
        records.clear()
        ours = copy.deepcopy(smol_tokenizer)
        set_chat_template(ours)
        assert len(tokenize_example(ours, long)["input_ids"]) > ours.model_max_length
        assert not any("Token indices sequence length" in r.getMessage() for r in records)  # ... and ours is quiet
    finally:
        logger.removeHandler(handler)
