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

ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "model": "assistant",
                  "system": "system", "tool": "tool", "function": "tool", "observation": "tool",
                  "function_call": "assistant", "function_response": "tool", "ipython": "tool"}
# Column pairs people commonly use for a single-turn exchange, most specific first.
PAIRS = [("question", "answer"), ("prompt", "response"), ("query", "response"), ("instruction", "response"),
         ("input", "output"), ("instruction", "output"), ("question", "response"), ("prompt", "answer"),
         ("user", "assistant"), ("human", "assistant"), ("context", "response"), ("source", "target"),
         ("problem", "solution"), ("input", "target"), ("text", "label")]
TEXT_COLUMNS = ("text", "content", "document")
MAX_FIELD_CHARS = 1_000_000  # ~250k tokens: far past any max_seq_length, so surely a mistake


class RowError(ValueError):
    """One row cannot be used: `field` names where, the message says why."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


# --- detection


def detect_format(columns, first_row: dict) -> str | None:
    """The most likely format for rows with these columns, or None."""
    cols = set(columns)
    for key in ("messages", "conversations", "conversation", "chat"):
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


def pair_columns(cols) -> tuple[str, str] | None:
    cols = set(cols)
    for a, b in PAIRS:
        if a in cols and b in cols:
            return a, b
    return None


# --- converters (row -> canonical row)


def to_messages_alpaca(row: dict) -> dict:
    instruction = _text(row, "instruction")
    extra = row.get("input")
    if extra is not None and not isinstance(extra, str):
        raise RowError("input", f"must be text, got {type(extra).__name__}")
    user = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
    messages = []
    if isinstance(row.get("system"), str) and row["system"].strip():
        messages.append({"role": "system", "content": row["system"]})
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": _text(row, "output")}]
    return {"messages": messages}


def to_messages_sharegpt(row: dict) -> dict:
    key = next(k for k in ("conversations", "conversation", "messages", "chat") if k in row)
    turns = _list(row, key)
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise RowError(f"{key}[{i}]", f"must be an object with 'from' and 'value', got {type(turn).__name__}")
        who = turn.get("from", turn.get("role"))
        if who not in SHAREGPT_ROLES:
            raise RowError(f"{key}[{i}].from", f"unknown role {who!r}: use human, gpt, system or tool")
        message = {"role": SHAREGPT_ROLES[who], "content": turn.get("value", turn.get("content"))}
        if who == "function_call" and isinstance(message["content"], str):
            message = {"role": "assistant", "content": "", "tool_calls": [_tool_call_from_text(
                message["content"], f"{key}[{i}].value")]}
        messages.append(message)
    out = {"messages": messages}
    return _with_tools(row, out)


def to_messages_messages(row: dict) -> dict:
    key = next(k for k in ("messages", "conversations", "conversation", "chat") if k in row)
    out = {"messages": [dict(m) if isinstance(m, dict) else m for m in _list(row, key)]}
    return _with_tools(row, out)


def to_messages_prompt_completion(row: dict) -> dict:
    prompt, completion = row.get("prompt"), row.get("completion")
    if isinstance(prompt, list) or isinstance(completion, list):
        prompt = prompt if isinstance(prompt, list) else [{"role": "user", "content": _text(row, "prompt")}]
        if not isinstance(completion, list):
            completion = [{"role": "assistant", "content": _text(row, "completion")}]
        return _with_tools(row, {"messages": [dict(m) if isinstance(m, dict) else m for m in prompt + completion]})
    return {"messages": [{"role": "user", "content": _text(row, "prompt")},
                         {"role": "assistant", "content": _text(row, "completion")}]}


def to_text(row: dict) -> dict:
    key = next((c for c in TEXT_COLUMNS if c in row), "text")
    text = _text(row, key)
    return {"text": text}


def columns_converter(prompt_column: str, response_column: str):
    """A converter for two named columns (explicit mapping, or a detected common pair)."""

    def convert(row: dict) -> dict:
        for column in (prompt_column, response_column):
            if column not in row:
                raise RowError(column, f"column missing (columns here: {', '.join(map(str, row))})")
        messages = []
        if isinstance(row.get("system"), str) and row["system"].strip():
            messages.append({"role": "system", "content": row["system"]})
        messages += [{"role": "user", "content": _text(row, prompt_column)},
                     {"role": "assistant", "content": _text(row, response_column)}]
        return {"messages": messages}

    return convert


CONVERTERS = {
    "messages": to_messages_messages,
    "sharegpt": to_messages_sharegpt,
    "alpaca": to_messages_alpaca,
    "prompt_completion": to_messages_prompt_completion,
    "text": to_text,
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


# --- validation of a canonical conversation


def validate(example: dict) -> dict:
    """Check a canonical row and normalise tool calls; raises RowError for an unusable row."""
    if "text" in example:
        if not example["text"].strip():
            raise RowError("text", "empty text")
        _check_size("text", example["text"])
        return example
    messages = example["messages"]
    if not messages:
        raise RowError("messages", "empty conversation")
    tools = example.get("tools")
    if tools is not None:
        example["tools"] = _parse_tools(tools)
    seen_user = False
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise RowError(where, f"must be an object with role and content, got {type(m).__name__}")
        role = m.get("role")
        if role not in ROLES:
            raise RowError(f"{where}.role", f"unknown role {role!r}: use system, user, assistant or tool")
        if role == "system" and i > 0:
            raise RowError(f"{where}.role", "a system message may only come first")
        if not seen_user and role in ("assistant", "tool"):
            raise RowError(f"{where}.role", "the conversation must start with user (or system, then user)")
        seen_user = seen_user or role == "user"
        content = m.get("content")
        if isinstance(content, list):  # content blocks: keep text blocks only
            if not all(isinstance(b, dict) and b.get("type") == "text" for b in content):
                raise RowError(f"{where}.content", "only text content blocks are supported")
            content = m["content"] = "".join(str(b.get("text", "")) for b in content)
        if role == "assistant" and m.get("tool_calls"):
            m["tool_calls"] = [_normalise_tool_call(c, f"{where}.tool_calls[{j}]")
                               for j, c in enumerate(_as_list(m["tool_calls"], f"{where}.tool_calls"))]
            if content is None:
                m["content"] = content = ""
        if not isinstance(content, str):
            raise RowError(f"{where}.content", f"must be text, got {type(content).__name__}")
        _check_size(f"{where}.content", content)
        if role == "assistant" and not content.strip() and not m.get("tool_calls"):
            raise RowError(f"{where}.content", "empty response")
        if role == "user" and not content.strip():
            raise RowError(f"{where}.content", "empty user message")
        for key in list(m):
            if key not in ("role", "content", "tool_calls", "tool_call_id", "name"):
                del m[key]
            elif m[key] is None:
                del m[key]
    if not any(m["role"] == "assistant" for m in messages):
        raise RowError("messages", "no assistant reply to learn from")
    return example


def _text(row: dict, key: str) -> str:
    if key not in row:
        raise RowError(key, f"column missing (columns here: {', '.join(map(str, row))})")
    value = row[key]
    if value is None:
        raise RowError(key, "null value")
    if not isinstance(value, str):
        raise RowError(key, f"must be text, got {type(value).__name__}")
    if not value.strip():
        raise RowError(key, "empty text")
    _check_size(key, value)
    return value


def _check_size(where: str, value: str):
    if len(value) > MAX_FIELD_CHARS:
        raise RowError(where, f"{len(value):,} characters, over the {MAX_FIELD_CHARS:,} limit: split it into "
                              "smaller examples")


def _list(row: dict, key: str) -> list:
    return _as_list(row.get(key), key)


def _as_list(value, where: str) -> list:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise RowError(where, "a string that is not a JSON list") from None
    if hasattr(value, "tolist"):  # numpy arrays from Parquet
        value = value.tolist()
    if not isinstance(value, list):
        raise RowError(where, f"must be a list, got {type(value).__name__}")
    return value


def _with_tools(row: dict, out: dict) -> dict:
    if row.get("tools") not in (None, "", []):
        out["tools"] = row["tools"]
    return out


def _parse_tools(tools) -> list:
    tools = _as_list(tools, "tools")
    parsed = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise RowError(f"tools[{i}]", "must be an object describing a function")
        fn = tool.get("function", tool)
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise RowError(f"tools[{i}]", "a tool needs a function name")
        parsed.append({"type": "function", "function": fn})
    return parsed


def _normalise_tool_call(call, where: str) -> dict:
    if not isinstance(call, dict):
        raise RowError(where, "malformed tool call: must be an object")
    fn = call.get("function", call)
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise RowError(f"{where}.function.name", "malformed tool call: missing function name")
    args = fn.get("arguments", {})
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            raise RowError(f"{where}.function.arguments", "malformed tool call: arguments are not valid JSON") from None
    if not isinstance(args, dict):
        raise RowError(f"{where}.function.arguments", "malformed tool call: arguments must be a JSON object")
    return {"type": "function", "function": {"name": fn["name"], "arguments": args}}


def _tool_call_from_text(text: str, where: str) -> dict:
    try:
        call = json.loads(text)
    except json.JSONDecodeError:
        raise RowError(where, "malformed tool call: not valid JSON") from None
    return _normalise_tool_call(call, where)
