"""Detect a row format and convert rows to one canonical conversational form.

Canonical rows are either `{"messages": [{"role", "content", ...}], "tools": [...]}` (tools
optional) or `{"text": "..."}` for plain language modelling. Converters are pure functions from a
row to a canonical row; a row that cannot be used raises `RowError` naming the field and reason.

>>> to_messages_alpaca({"instruction": "Add", "input": "2+2", "output": "4"})
{'messages': [{'role': 'user', 'content': 'Add\\n\\n2+2'}, {'role': 'assistant', 'content': '4'}]}
>>> detect_format(["conversations"], {"conversations": [{"from": "human", "value": "hi"}]})
'sharegpt'
"""

from __future__ import annotations

import json
import re

from ftspace.data.messages import MediaError, RowError, as_list, list_of, loose_json, media_reason, message, note, text_of
from ftspace.errors import escape

PAIRS = [("question", "answer"), ("prompt", "response"), ("query", "response"), ("instruction", "response"),
         ("input", "output"), ("instruction", "output"), ("question", "response"), ("prompt", "answer"),
         ("user", "assistant"), ("human", "assistant"), ("context", "response"), ("source", "target"),
         ("problem", "solution"), ("input", "target"), ("text", "label")]
TEXT_COLUMNS = ("text", "content", "document")
PREFERENCE_PROMPTS = ("prompt", "question", "input", "instruction", "query")  # the prompt of a preference row
KTO_LABELS = ("label", "kto_tag")  # a boolean: is this reply desirable (TRL's KTO rows, LLaMA-Factory's kto_tag)
CONVERSATION_COLUMNS = ("messages", "conversations", "conversation", "chat")
MEDIA_COLUMNS = ("images", "image", "audio", "audios", "videos", "video")
NOTE_CHOSEN = "preference rows: trained on the chosen reply only (method sft; set method dpo or orpo to learn from both)"
NOTE_PREFERENCE = "preference rows: chosen and rejected replies kept for preference training"
# GRPO: prompts, with the reference answer a reward may check
PROMPT_COLUMNS = ("prompt", "question", "problem", "query", "instruction", "input")
ANSWER_COLUMNS = ("answer", "solution", "reference", "ground_truth", "final_answer", "expected_answer", "gold")
REPLY_COLUMNS = ("response", "output", "completion", "target")  # a demonstrated reply: the reference when no answer
NOTE_PROMPTS = "prompts with answers: ready for GRPO (method grpo)"
NOTE_PROMPT_TOOLS = "prompts offering tools"


def detect_format(columns, first_row: dict) -> str | None:
    """The most likely format for rows with these columns, or None.

    >>> detect_format(["prompt", "chosen", "rejected"], {})
    'preference'
    >>> detect_format(["prompt", "completion", "label"], {"label": True})
    'kto'
    """
    cols = set(columns)
    media = [c for c in MEDIA_COLUMNS if c in cols and first_row.get(c) not in (None, [], "")]
    if media:
        return "multimodal"
    if "chosen" in cols and "rejected" in cols:
        return "preference"
    if any(isinstance(first_row.get(c), bool) for c in KTO_LABELS) and ("completion" in cols or
                                                                       cols & set(CONVERSATION_COLUMNS)):
        return "kto"
    if {"query", "answers"} <= cols:
        return "function_calls"
    for key in CONVERSATION_COLUMNS:
        if key in cols:
            value = first_row.get(key)
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    value = None
            if isinstance(value, list) and value and isinstance(value[0], dict):
                if "from" in value[0] or "value" in value[0]:
                    return "sharegpt"
                return "messages"
            return "sharegpt" if key == "conversations" else "messages"
    if "instruction" in cols and "output" in cols:
        return "alpaca"
    if "prompt" in cols and "completion" in cols:
        return "prompt_completion"
    if pair_columns(cols):
        return "pairs"
    if any(c in cols for c in TEXT_COLUMNS):
        return "text"
    return None


def prompts_ready(row: dict) -> bool:
    """Is this row a prompt with a reference answer (a GRPO row)? An answer column beside a prompt column, or
    beside a conversation whose last turn is the user's.

    >>> prompts_ready({"question": "2+2?", "answer": "4"}), prompts_ready({"prompt": "Hi", "response": "Hello"})
    (True, False)
    """
    answer = next((c for c in ANSWER_COLUMNS if _given(row.get(c))), None)
    if answer is None:
        return False
    if any(isinstance(row.get(c), (str, list)) and row.get(c) for c in PROMPT_COLUMNS if c != answer):
        return True
    conversation = next((row[k] for k in CONVERSATION_COLUMNS if k in row), None)
    if isinstance(conversation, str):
        conversation = loose_json(conversation)
    last = conversation[-1] if isinstance(conversation, list) and conversation else None
    return isinstance(last, dict) and (last.get("role") or last.get("from")) in ("user", "human")


def to_prompt(row: dict, prompt_column: str = "", answer_column: str = "") -> dict:
    """A row as GRPO takes it: {"prompt": [messages ending with the user's turn], "answer": reference text or
    "" (none), "tools"?}. The prompt is a prompt-like column (text or messages), a conversation (its last reply,
    if any, is the reference unless an answer column gives one), or an instruction (+ input); the answer is an
    answer-like column, else the demonstrated reply.

    >>> to_prompt({"question": "2+2?", "answer": 4})
    {'prompt': [{'role': 'user', 'content': '2+2?'}], 'answer': '4'}
    >>> to_prompt({"messages": [{"role": "user", "content": "Hi"}]})["answer"]
    ''
    """
    answer_column = answer_column or next((c for c in ANSWER_COLUMNS if c in row), "")
    conversation = next((k for k in CONVERSATION_COLUMNS if k in row), None)
    reply = None
    if prompt_column:
        if prompt_column not in row:
            raise RowError(prompt_column, f"column missing (columns here: {', '.join(escape(c, 60) for c in row)})")
        prompt = _turns(row[prompt_column], prompt_column, default_role="user")
    elif conversation and not any(row.get(c) not in (None, "", []) for c in PROMPT_COLUMNS):
        prompt = [message(m, f"{conversation}[{i}]") for i, m in enumerate(list_of(row, conversation))]
        if prompt and prompt[-1].get("role") in ("assistant", "gpt", "model", "bot"):
            reply = prompt.pop()
    elif "instruction" in row and "output" in row:
        prompt = to_messages_alpaca(row)["messages"][:-1]
        reply = {"content": row.get("output")}
    else:
        column = next((c for c in PROMPT_COLUMNS if row.get(c) not in (None, "", []) and c != answer_column), None)
        if column is None:
            raise RowError("prompt", "no prompt: GRPO needs a prompt (a prompt or question column, or messages "
                                     "ending with the user's turn)")
        prompt = _turns(row[column], column, default_role="user")
    if not prompt:
        raise RowError("prompt", "empty prompt")
    if isinstance(row.get("system"), str) and row["system"].strip() and prompt[0].get("role") != "system":
        prompt.insert(0, {"role": "system", "content": row["system"]})
    answer = row.get(answer_column) if answer_column else None
    if not _given(answer):
        reply_column = next((c for c in REPLY_COLUMNS if row.get(c) not in (None, "", [])), None)
        answer = row[reply_column] if reply_column and not reply else (reply or {}).get("content")
    if isinstance(answer, (list, dict)):
        answer = json.dumps(answer, ensure_ascii=False)
    out = {"prompt": prompt, "answer": "" if answer is None else str(answer)}
    return _with_tools(row, out)


def _given(value) -> bool:
    """A value with something in it (0 and false count; None, blanks and empty lists do not)."""
    return value is not None and value != [] and bool(str(value).strip())


def pair_columns(cols) -> tuple[str, str] | None:
    cols = set(cols)
    for a, b in PAIRS:
        if a in cols and b in cols:
            return a, b
    return None


# --- converters (row -> canonical row)


def to_messages_alpaca(row: dict) -> dict:
    instruction = text_of(row, "instruction")
    extra = row.get("input")
    if extra is not None and not isinstance(extra, str):
        raise RowError("input", f"must be text, got {type(extra).__name__}")
    user = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
    messages = []
    if isinstance(row.get("system"), str) and row["system"].strip():
        messages.append({"role": "system", "content": row["system"]})
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": text_of(row, "output")}]
    return {"messages": messages}


def to_messages_sharegpt(row: dict) -> dict:
    """ShareGPT turns ({"from", "value"}); roles and tool dialects are normalised by `validate`."""
    return to_messages_messages(row)


def to_messages_messages(row: dict) -> dict:
    key = next(k for k in CONVERSATION_COLUMNS if k in row)
    out = {"messages": [message(m, f"{key}[{i}]") for i, m in enumerate(list_of(row, key))]}
    if isinstance(row.get("system"), str) and row["system"].strip() and out["messages"] \
            and out["messages"][0].get("role") != "system":
        out["messages"].insert(0, {"role": "system", "content": row["system"]})
    return _with_tools(row, out)


def to_messages_prompt_completion(row: dict) -> dict:
    prompt, completion = row.get("prompt"), row.get("completion")
    if isinstance(prompt, list) or isinstance(completion, list):
        prompt = prompt if isinstance(prompt, list) else [{"role": "user", "content": text_of(row, "prompt")}]
        if not isinstance(completion, list):
            completion = [{"role": "assistant", "content": text_of(row, "completion")}]
        return _with_tools(row, {"messages": [message(m, "prompt") for m in prompt + completion]})
    return {"messages": [{"role": "user", "content": text_of(row, "prompt")},
                         {"role": "assistant", "content": text_of(row, "completion")}]}


def to_kto_sft(row: dict) -> dict:
    """KTO rows (a reply and a boolean `label`): only desirable replies are learned by SFT.

    >>> to_kto_sft({"prompt": "Hi", "completion": "Go away.", "label": False})
    Traceback (most recent call last):
    ...
    ftspace.data.messages.RowError: label: false: an undesirable reply (KTO data), not learned by SFT
    """
    column = next((c for c in KTO_LABELS if c in row), "label")
    label = row.get(column)
    if not isinstance(label, bool):
        raise RowError(column, f"must be true or false, got {label!r}")
    if not label:
        raise RowError(column, "false: an undesirable reply (KTO data), not learned by SFT")
    if any(k in row for k in CONVERSATION_COLUMNS) and "completion" not in row:
        return to_messages_messages(row)
    return to_messages_prompt_completion(row)


def to_preference(row: dict) -> dict:
    """Preference rows in the shapes people share them, as TRL's conversational preference format:
    {"prompt": [messages], "chosen": [messages], "rejected": [messages]}. The prompt is a `prompt`
    column (text or messages), a conversation column (LLaMA-Factory), or the turns `chosen` and `rejected`
    share when each holds the whole conversation (Anthropic HH, UltraFeedback).

    >>> to_preference({"prompt": "2+2?", "chosen": "4", "rejected": "5"})["rejected"]
    [{'role': 'assistant', 'content': '5'}]
    """
    conversation = next((k for k in CONVERSATION_COLUMNS if k in row), None)
    prompt_column = next((k for k in PREFERENCE_PROMPTS if row.get(k) not in (None, "", [])), None)
    if prompt_column:
        prompt = _turns(row[prompt_column], prompt_column, default_role="user")
    elif conversation:
        prompt = _turns(row[conversation], conversation, default_role="user")
    else:
        prompt = []
    chosen = _turns(row.get("chosen"), "chosen", default_role="assistant")
    rejected = _turns(row.get("rejected"), "rejected", default_role="assistant")
    for name, turns in (("chosen", chosen), ("rejected", rejected)):
        if not turns:
            raise RowError(name, f"empty {name} reply: both a chosen and a rejected reply are needed")
    if not prompt:  # whole conversations: the shared turns are the prompt
        shared = 0
        while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
            shared += 1
        prompt, chosen, rejected = chosen[:shared], chosen[shared:], rejected[shared:]
    else:  # a prompt column and whole conversations (UltraFeedback): drop the repeated prompt
        for turns in (chosen, rejected):
            if len(turns) > len(prompt) and turns[:len(prompt)] == prompt:
                del turns[:len(prompt)]
    if not prompt:
        raise RowError("prompt", "no prompt: the chosen and rejected replies answer nothing (add a prompt column)")
    if isinstance(row.get("system"), str) and row["system"].strip() and prompt[0].get("role") != "system":
        prompt.insert(0, {"role": "system", "content": row["system"]})
    out = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    return _with_tools(row, out)


def to_function_calls(row: dict) -> dict:
    """Function-calling rows as xLAM shares them: a `query`, the `answers` (a JSON list of {"name", "arguments"}
    calls) and the `tools` offered; the reply is the calls.

    >>> row = {"query": "Weather in Oslo?", "answers": '[{"name": "w", "arguments": {"city": "Oslo"}}]', "tools": "[]"}
    >>> from ftspace.data.messages import validate
    >>> validate(to_function_calls(row))["messages"][1]["tool_calls"]
    [{'type': 'function', 'function': {'name': 'w', 'arguments': {'city': 'Oslo'}}}]
    """
    calls = as_list(row.get("answers"), "answers")
    if not calls:
        raise RowError("answers", "empty: no function call to learn")
    out = {"messages": [{"role": "user", "content": text_of(row, "query")},
                        {"role": "assistant", "content": "", "tool_calls": calls}]}
    return _with_tools(row, out)


def to_text(row: dict) -> dict:
    key = next((c for c in TEXT_COLUMNS if c in row), "text")
    if key not in row or row[key] is None or not isinstance(row[key], str):
        text_of(row, key)  # the reason it cannot be used
    if not row[key].strip():
        raise RowError(key, "empty text")
    return {"text": row[key]}


def columns_converter(prompt_column: str, response_column: str):
    """A converter for two named columns (explicit mapping, or a detected common pair)."""

    def convert(row: dict) -> dict:
        for column in (prompt_column, response_column):
            if column not in row:
                raise RowError(column, f"column missing (columns here: {', '.join(escape(c, 60) for c in row)})")
        messages = []
        if isinstance(row.get("system"), str) and row["system"].strip():
            messages.append({"role": "system", "content": row["system"]})
        messages += [{"role": "user", "content": text_of(row, prompt_column)},
                     {"role": "assistant", "content": text_of(row, response_column)}]
        return {"messages": messages}

    return convert


def refuse_media(row: dict) -> dict:
    column = next(c for c in MEDIA_COLUMNS if row.get(c) not in (None, [], ""))
    raise MediaError(column, media_reason(f"a {column!r} column"))


CONVERTERS = {
    "messages": to_messages_messages,
    "sharegpt": to_messages_sharegpt,
    "alpaca": to_messages_alpaca,
    "prompt_completion": to_messages_prompt_completion,
    "text": to_text,
    "preference": to_preference,
    "kto": to_kto_sft,
    "function_calls": to_function_calls,
    "multimodal": refuse_media,
}


def converter_for(fmt: str, columns=(), prompt_column: str = "", response_column: str = ""):
    if fmt == "columns" or (prompt_column and response_column):
        return columns_converter(prompt_column, response_column)
    if fmt == "pairs":
        pair = pair_columns(columns)
        if pair is None:
            raise RowError("columns", "no known question/answer column pair; map two columns explicitly")
        return columns_converter(*pair)
    return CONVERTERS[fmt]


def as_sft(example: dict, notes: dict | None = None) -> dict:
    """A canonical row for supervised fine-tuning: a preference row becomes its prompt and chosen reply."""
    if "chosen" not in example:
        return example
    note(notes, NOTE_CHOSEN)
    out = {"messages": example["prompt"] + example["chosen"]}
    if example.get("tools"):
        out["tools"] = example["tools"]
    return out


def _turns(value, where: str, default_role: str) -> list[dict]:
    """A preference column as messages: text (one turn of `default_role`, or an Anthropic-HH transcript),
    one message, or a list of messages."""
    if value is None:
        return []
    if isinstance(value, str):
        if not value.strip():
            return []
        stripped = value.strip()
        if stripped[:1] in "[{":
            parsed = loose_json(stripped)
            if isinstance(parsed, (list, dict)):
                return _turns(parsed, where, default_role)
        if "\n\nHuman:" in "\n\n" + value and "\n\nAssistant:" in value:
            return _hh_transcript(value)
        return [{"role": default_role, "content": value}]
    if isinstance(value, dict):
        value = [value]
    return [message(m, f"{where}[{i}]") for i, m in enumerate(as_list(value, where))]


def _hh_transcript(text: str) -> list[dict]:
    """Anthropic HH's "\\n\\nHuman: ...\\n\\nAssistant: ..." transcripts as messages."""
    parts = re.split(r"\n\n(Human|Assistant):", "\n\n" + text.lstrip("\n") if not text.startswith("\n\n") else text)
    turns = []
    for speaker, said in zip(parts[1::2], parts[2::2]):
        turns.append({"role": "user" if speaker == "Human" else "assistant", "content": said.strip()})
    return turns


def _with_tools(row: dict, out: dict) -> dict:
    if row.get("tools") not in (None, "", []):
        out["tools"] = row["tools"]
    return out


