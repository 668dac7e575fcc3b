"""Response-only masking, token by token, on the real SmolLM2 tokenizer and chat template."""

import json
import os
import re
import subprocess
import sys

import pytest

from apptools import ROOT

from ftspace.data.messages import validate
from ftspace.data.tokenize import CHAT_TEMPLATES, set_chat_template, tokenize_example

END = "<|im_end|>\n"


def trained_and_masked(tokenizer, example, **kw):
    out = tokenize_example(tokenizer, validate(example), **kw)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert len(ids) == len(mask)
    # Each token is either trained or masked: decode the maximal runs of each kind.
    runs, current, kind = [], [], None
    for token, m in zip(ids, mask):
        if m != kind and current:
            runs.append((kind, tokenizer.decode(current)))
            current = []
        kind = m
        current.append(token)
    runs.append((kind, tokenizer.decode(current)))
    return runs, ids, mask


def test_single_turn(smol_tokenizer):
    example = {"messages": [{"role": "user", "content": "What is the capital of Zorblax?"},
                            {"role": "assistant", "content": "Quillhaven."}]}
    runs, ids, mask = trained_and_masked(smol_tokenizer, example)
    assert runs == [
        (0, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\nWhat is the capital of Zorblax?<|im_end|>\n<|im_start|>assistant\n"),
        (1, "Quillhaven." + END),
    ]
    # The whole sequence is exactly the chat template's rendering, tokenized.
    rendered = smol_tokenizer.apply_chat_template(example["messages"], tokenize=False)
    assert smol_tokenizer.decode(ids) == rendered
    # The turn-ending token is trained, so the model learns to stop.
    im_end = smol_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert mask[ids.index(im_end, len(ids) - 4)] == 1


def test_multi_turn_with_system(smol_tokenizer):
    example = {"messages": [{"role": "system", "content": "Be brief."},
                            {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                            {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye."}]}
    runs, _, _ = trained_and_masked(smol_tokenizer, example)
    assert runs == [
        (0, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
        (1, "Hello!" + END),
        (0, "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"),
        (1, "Goodbye." + END),
    ]


def test_tool_conversation(smol_tokenizer):
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                               "parameters": {"type": "object"}}}]
    example = {"tools": tools, "messages": [
        {"role": "user", "content": "Oslo?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "content": '{"temp": 3}'},
        {"role": "assistant", "content": "3 degrees."}]}
    runs, _, _ = trained_and_masked(smol_tokenizer, example)
    assert [kind for kind, _ in runs] == [0, 1, 0, 1]
    # SmolLM2's template has no tool support: tools go into the system message, calls into the text.
    assert runs[0][1].startswith("<|im_start|>system\nYou can call these tools:\n<tools>\n{\"name\": \"get_weather\"")
    assert runs[1] == (1, '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>' + END)
    assert runs[2] == (0, '<|im_start|>tool\n{"temp": 3}<|im_end|>\n<|im_start|>assistant\n')
    assert runs[3] == (1, "3 degrees." + END)


def test_loss_on_everything_when_asked(smol_tokenizer):
    example = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    _, _, mask = trained_and_masked(smol_tokenizer, example, responses_only=False)
    assert set(mask) == {1}


def test_plain_text_trains_every_token_and_ends_with_eos(smol_tokenizer):
    out = tokenize_example(smol_tokenizer, {"text": "Once upon a time"})
    assert set(out["assistant_masks"]) == {1}
    assert out["input_ids"][-1] == smol_tokenizer.eos_token_id


def test_truncation_keeps_ids_and_mask_aligned(smol_tokenizer):
    example = {"messages": [{"role": "user", "content": "x " * 100}, {"role": "assistant", "content": "y"}]}
    out = tokenize_example(smol_tokenizer, validate(example), max_length=16)
    assert len(out["input_ids"]) == len(out["assistant_masks"]) == 16


@pytest.mark.parametrize("name", sorted(CHAT_TEMPLATES))
def test_templates_for_models_without_one(smol_tokenizer, name):
    import copy

    tok = copy.deepcopy(smol_tokenizer)
    tok.chat_template = None
    assert set_chat_template(tok, "auto" if name == "chatml" else name) == name
    example = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"}]}
    runs, _, _ = trained_and_masked(tok, example)
    trained = "".join(text for kind, text in runs if kind == 1)
    assert trained.startswith("Hello there") and "Hi" not in trained


def test_tool_calls_in_replies_are_parsed_and_rendered():
    from ftspace.chat import parse_tool_calls
    from ftspace.ui.chat_tab import render_reply

    reply = 'Checking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    assert parse_tool_calls(reply) == [{"name": "get_weather", "arguments": {"city": "Oslo"}}]
    assert render_reply(reply) == 'Checking.\n\n🔧 **get_weather**(`{"city": "Oslo"}`)'
    assert render_reply("plain answer") == "plain answer"
    assert parse_tool_calls("<tool_call>{not json}</tool_call>") == []


# --- the real thing: batches from each backend's trainer, as built for training

BATCHES = r'''
import json, sys
from pathlib import Path
from ftspace.engine.backends import trainer_class_name
from ftspace.engine.worker import build_trainer
from ftspace.runs import Run

trainer, model, tokenizer, _ = build_trainer(Run(Path(sys.argv[1])))
rows = []
for batch in trainer.get_train_dataloader():
    for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist()):
        rows.append({"input_ids": ids, "labels": labels})
print("BATCHES " + json.dumps({"trainer": trainer_class_name(trainer), "pad": tokenizer.pad_token_id, "rows": rows}))
'''

CONVERSATIONS = [
    {"messages": [{"role": "system", "content": "Answer in one word."},
                  {"role": "user", "content": "Capital of Zorblax?"}, {"role": "assistant", "content": "Quillhaven."}]},
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
                  {"role": "user", "content": "Tell me a colour."}, {"role": "assistant", "content": "Teal."}]},
    {"tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                                 "parameters": {"type": "object"}}}],
     "messages": [{"role": "user", "content": "Oslo?"},
                  {"role": "assistant", "content": "", "tool_calls": [
                      {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
                  {"role": "tool", "content": '{"temp": 3}'}, {"role": "assistant", "content": "3 degrees."}]},
]
ASSISTANT_BLOCK = re.compile(r"<\|im_start\|>assistant\n(.*?<\|im_end\|>\n)", re.S)


@pytest.mark.parametrize("backend", ["unsloth", "hf"])
def test_trainer_batches_train_on_assistant_tokens_only(backend, runs_dir, tiny_model, smol_tokenizer, tmp_path):
    """Labels in real batches from `trainer.get_train_dataloader()`: -100 on system, user and tool tokens
    (and padding), equal to the input ids on every assistant token, for single-turn, multi-turn and tool
    conversations. Which tokens are the assistant's is read off the rendered text, not from our mask."""
    from ftspace import runs
    from ftspace.config import RunConfig

    data = tmp_path / "conversations.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in CONVERSATIONS))
    run = runs.create(RunConfig(model_name=str(tiny_model), dataset=str(data), backend=backend, max_steps=1,
                                per_device_train_batch_size=2, max_seq_length=512, gradient_checkpointing=False))
    out = subprocess.run([sys.executable, "-c", BATCHES, str(run.path)], capture_output=True, text=True, cwd=ROOT,
                         timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("BATCHES "))[8:])
    unsloth_made = "Unsloth" in found["trainer"] or "_make_cpu_sft_trainer" in found["trainer"]
    assert unsloth_made == (backend == "unsloth"), found["trainer"]  # each backend's own trainer
    assert len(found["rows"]) == len(CONVERSATIONS)
    seen = set()
    for row in found["rows"]:
        ids, labels = row["input_ids"], row["labels"]
        # Padding (a batch of two pads the shorter row) is never trained; the real tokens render a conversation.
        while ids and ids[-1] == found["pad"] and labels[-1] == -100:
            ids, labels = ids[:-1], labels[:-1]
        text = smol_tokenizer.decode(ids)
        expected = ASSISTANT_BLOCK.findall(text)
        assert expected, text
        trained, masked, piece, kind = [], [], [], None
        for token, label in zip(ids, labels):
            assert label in (-100, token), (token, label)  # a trained token's label is the token itself
            now = label != -100
            if piece and now != kind:
                (trained if kind else masked).append(smol_tokenizer.decode(piece))
                piece = []
            kind = now
            piece.append(token)
        (trained if kind else masked).append(smol_tokenizer.decode(piece))
        assert trained == expected, (trained, expected)  # every assistant token trained, nothing else
        assert not any(marker in "".join(trained) for marker in ("<|im_start|>", "Quillhaven?", "Oslo?", "temp"))
        seen.add(next(c for c in ("Quillhaven.", "Teal.", "3 degrees.") if c in text))
    assert seen == {"Quillhaven.", "Teal.", "3 degrees."}  # all three kinds of conversation were checked
