"""Render canonical rows through a chat template, tokenize, and mark the tokens that are trained.

Masking is done on characters, then mapped to tokens: for each assistant turn i, the trained span
is the text between render(messages[:i], add_generation_prompt=True) and render(messages[:i+1]).
That works for any template that renders a conversation's prefix as a prefix of the whole (chatml,
Llama 3, Zephyr, Gemma, ...). A template that rewrites earlier turns (Qwen3 drops old reasoning)
falls back to training on the last assistant turn only, which is still correct.
"""

from __future__ import annotations

import collections
import json

CHAT_TEMPLATES = {
    "chatml": (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
        "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    "zephyr": (
        "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
    ),
    "llama3": (
        "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
        "'<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    ),
}
# The text that ends a turn in each of our templates, so generation knows where to stop.


def set_chat_template(tokenizer, choice: str = "auto") -> str:
    """Give the tokenizer a chat template; returns the name used ('model' for its own)."""
    # transformers warns "Token indices sequence length is longer than ..." once per tokenizer; our own
    # report already counts the rows over max_seq_length, so mark that warning as given.
    getattr(tokenizer, "deprecation_warnings", {})["sequence-length-is-longer-than-the-specified-maximum"] = True
    if choice == "auto":
        if getattr(tokenizer, "chat_template", None):
            return "model"
        choice = "chatml"
    tokenizer.chat_template = CHAT_TEMPLATES[choice]
    return choice


def supports_tools(tokenizer) -> bool:
    template = getattr(tokenizer, "chat_template", None) or ""
    return "tool_calls" in template and "tools" in template


def supports_reasoning(tokenizer) -> bool:
    """Whether the chat template renders an assistant turn's `reasoning_content` (Qwen3, DeepSeek-R1, ...)."""
    return "reasoning_content" in (getattr(tokenizer, "chat_template", None) or "")


def settle_reasoning_note(report, tokenizer):
    """Once the template is known, the report says whether the rows' reasoning is kept or dropped."""
    from ftspace.data import messages

    if report.notes.get(messages.NOTE_REASONING) and not supports_reasoning(tokenizer):
        report.notes[messages.NOTE_REASONING_DROPPED] = report.notes.pop(messages.NOTE_REASONING)


def for_template(tokenizer, messages: list[dict]) -> list[dict]:
    """Messages as the template takes them: our `weight` mark removed, reasoning removed where the template
    has no place for it (the data report says so)."""
    keep_reasoning = supports_reasoning(tokenizer)
    out = []
    for m in messages:
        if "weight" in m or ("reasoning_content" in m and not keep_reasoning):
            m = {k: v for k, v in m.items() if k != "weight" and (keep_reasoning or k != "reasoning_content")}
        out.append(m)
    return out


def fold_tools(example: dict) -> list[dict]:
    """Messages with tools and tool calls written as text, for templates that do not know them.

    The format is Hermes / Qwen style: the tool list in the system message, each call as
    <tool_call>{"name": ..., "arguments": {...}}</tool_call> in the assistant's text.

    >>> fold_tools({"messages": [{"role": "user", "content": "hi"},
    ...     {"role": "assistant", "content": "", "tool_calls": [{"type": "function",
    ...      "function": {"name": "f", "arguments": {"x": 1}}}]}]})[1]["content"]
    '<tool_call>\\n{"name": "f", "arguments": {"x": 1}}\\n</tool_call>'
    """
    messages = [dict(m) for m in example["messages"]]
    tools = example.get("tools")
    if tools:
        spec = "\n".join(json.dumps(t["function"], ensure_ascii=False) for t in tools)
        text = ("You can call these tools:\n<tools>\n" + spec + "\n</tools>\nTo call one, reply with "
                '<tool_call>\n{"name": <name>, "arguments": <object>}\n</tool_call>')
        if messages[0]["role"] == "system":
            messages[0]["content"] = messages[0]["content"] + "\n\n" + text
        else:
            messages.insert(0, {"role": "system", "content": text})
    for m in messages:
        calls = m.pop("tool_calls", None)
        if calls:
            rendered = [f"<tool_call>\n{json.dumps(c['function'], ensure_ascii=False)}\n</tool_call>" for c in calls]
            m["content"] = "\n".join(([m["content"]] if m.get("content") else []) + rendered)
        m.pop("tool_call_id", None)
        m.pop("name", None)
    return messages


def render(tokenizer, messages, tools=None, add_generation_prompt=False) -> str:
    kwargs = {"tools": tools} if tools else {}
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                         **kwargs)


def assistant_spans(tokenizer, example: dict) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of the assistant's turns."""
    if supports_tools(tokenizer):
        messages, tools = example["messages"], example.get("tools")
    else:
        messages, tools = fold_tools(example), None
    weights = [m.get("weight", 1) for m in messages]
    messages = for_template(tokenizer, messages)
    full = render(tokenizer, messages, tools)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant" or not weights[i]:
            continue
        before = render(tokenizer, messages[:i], tools, add_generation_prompt=True) if i else ""
        through = render(tokenizer, messages[: i + 1], tools)
        if not (full.startswith(through) and through.startswith(before)):
            # Template is not prefix-consistent: train on the final assistant turn only.
            last = max(j for j, mm in enumerate(messages) if mm["role"] == "assistant" and weights[j])
            prefix = render(tokenizer, messages[:last], tools, add_generation_prompt=True)
            return full, ([(len(prefix), len(full))] if full.startswith(prefix) else [])
        spans.append((len(before), len(through)))
    return full, spans


def text_windows(ids: list[int], max_length: int, stride: int = 0) -> list[list[int]]:
    """Token ids of a long text cut into windows of max_length, each starting `stride` tokens before the
    previous one ended (continued pre-training's preparation; the last window may be shorter).

    >>> text_windows(list(range(10)), 4), text_windows(list(range(10)), 4, stride=2)
    ([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]], [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 9]])
    """
    step = max(1, max_length - stride)
    windows = []
    for start in range(0, len(ids), step):
        windows.append(ids[start:start + max_length])
        if start + max_length >= len(ids):
            break
    return windows


def encode(tokenizer, example: dict, responses_only: bool = True, max_length: int | None = None,
           stride: int = 0) -> list[dict]:
    """The training examples one canonical row makes: a text longer than max_length becomes windows of it,
    anything else one example (truncated to max_length)."""
    if "text" in example and max_length:
        ids = tokenize_example(tokenizer, example)["input_ids"]
        return [{"input_ids": w, "assistant_masks": [1] * len(w)} for w in text_windows(ids, max_length, stride)]
    return [tokenize_example(tokenizer, example, responses_only, max_length)]


def tokenize_example(tokenizer, example: dict, responses_only: bool = True, max_length: int | None = None) -> dict:
    """{'input_ids', 'assistant_masks'} for one canonical row (1 = the token is trained)."""
    if "text" in example:
        ids = tokenizer(example["text"], add_special_tokens=False)["input_ids"]
        if tokenizer.eos_token_id is not None:
            ids = ids + [tokenizer.eos_token_id]
        mask = [1] * len(ids)
    else:
        text, spans = assistant_spans(tokenizer, example)
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        if responses_only:
            mask = [int(any(s <= start < e for s, e in spans)) for start, _ in enc["offset_mapping"]]
        else:
            mask = [1] * len(ids)
    if max_length:
        ids, mask = ids[:max_length], mask[:max_length]
    return {"input_ids": ids, "assistant_masks": mask}


HISTOGRAM_SAMPLE = 5000  # lengths kept for the Dataset tab's histogram; the statistics count every row


class TokenCounter:
    """Token-length statistics over a stream of examples, in memory bounded by the number of distinct
    lengths (a 1 GB file's lengths are counted, not kept).

    >>> c = TokenCounter(max_seq_length=3)
    >>> for n in (1, 2, 2, 5): c.add(n)
    >>> s = c.stats(); (s["min"], s["p50"], s["max"], s["over_max_seq_length"])
    (1, 2, 5, 1)
    """

    def __init__(self, max_seq_length: int):
        self.max_seq_length, self.counts, self.sample = max_seq_length, collections.Counter(), []
        self.extra = {}  # windows / documents / stride, for text cut into windows

    def add(self, length: int):
        self.counts[length] += 1
        if len(self.sample) < HISTOGRAM_SAMPLE:
            self.sample.append(length)

    def stats(self) -> dict | None:
        n = sum(self.counts.values())
        if not n:
            return None
        ordered = sorted(self.counts.items())

        def pct(p):
            rank, seen = min(n - 1, int(p * n)), 0
            for length, count in ordered:
                seen += count
                if seen > rank:
                    return length

        return {"count": n, "min": ordered[0][0], "mean": sum(k * v for k, v in ordered) / n, "p50": pct(0.5),
                "p95": pct(0.95), "max": ordered[-1][0],
                "over_max_seq_length": sum(v for k, v in ordered if k > self.max_seq_length),
                "max_seq_length": self.max_seq_length, "lengths": self.sample, **self.extra}


def trained_pieces(tokenizer, encoded: dict) -> list[list]:
    """An encoded example as [text, trained] pieces: what the response-only mask trains on."""
    return [[tokenizer.decode([tid]), bool(m)] for tid, m in zip(encoded["input_ids"], encoded["assistant_masks"])]


def prompt_text(tokenizer, example: dict) -> str:
    """A GRPO row's prompt rendered through the model's chat template, ready for the reply (tools where the
    template has a place for them, folded into the prompt otherwise), as chat will prompt the model."""
    rows = {"messages": example["prompt"], "tools": example.get("tools")}
    if supports_tools(tokenizer):
        return render(tokenizer, for_template(tokenizer, rows["messages"]), rows["tools"], add_generation_prompt=True)
    return render(tokenizer, for_template(tokenizer, fold_tools(rows)), None, add_generation_prompt=True)
