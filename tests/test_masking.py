"""Response-only masking, token by token, on the real SmolLM2 tokenizer and chat template."""

import pytest

from ftspace.data.formats import validate
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
