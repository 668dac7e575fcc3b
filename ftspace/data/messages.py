"""Validation of a canonical conversation: each message's role and content (text, reasoning, tool calls and tool
results, in the shapes exporters write them) checked and normalised, with a note of what was changed; a row that
cannot be used raises `RowError` naming the field and the reason. Row format detection and conversion to this
form is ftspace.data.formats.

>>> validate({"messages": [{"role": "human", "content": "Hi"}, {"role": "gpt", "content": "Hello"}]})["messages"][0]
{'role': 'user', 'content': 'Hi'}
"""

from __future__ import annotations

import ast
import json
import re

from ftspace.errors import escape


ROLES = ("system", "user", "assistant", "tool")
# Role names in the wild, mapped to ours: ShareGPT's `from`, Gemma's "model", function-calling exports.
ROLE_ALIASES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "model": "assistant",
                "system": "system", "developer": "system", "tool": "tool", "function": "tool",
                "observation": "tool", "function_call": "assistant", "function_response": "tool",
                "ipython": "tool", "tool_response": "tool"}
# Column pairs people commonly use for a single-turn exchange, most specific first.
MEDIA_BLOCKS = ("image", "image_url", "input_image", "audio", "input_audio", "audio_url", "video", "video_url", "file")
MEDIA_PLACEHOLDERS = ("<image>", "<audio>", "<video>")
TEXT_BLOCKS = ("text", "input_text", "output_text")
REASONING_BLOCKS = ("reasoning", "thinking")
REASONING_FIELDS = ("reasoning_content", "reasoning", "thinking")
# Tool calls and their results written as content blocks: {"type": "tool_call", "value": "{json}"} (chat exports),
# Anthropic's tool_use / tool_result, OpenAI Responses' function_call / function_call_output, and Gemini's untyped
# {"functionCall": ...} / {"functionResponse": ...} parts.
TOOL_CALL_BLOCKS = ("tool_call", "tool_use", "function_call", "tool-call")
TOOL_RESULT_BLOCKS = ("tool_result", "tool_response", "function_call_output", "function_response", "tool-result")
UNTYPED_BLOCKS = {"functionCall": "function_call", "function_call": "function_call",
                  "functionResponse": "function_response", "function_response": "function_response"}
SKIPPED_BLOCKS = ("redacted_thinking",)  # encrypted reasoning: nothing a model can be trained on
MAX_FIELD_CHARS = 1_000_000  # ~250k tokens in one chat message: far past any max_seq_length, so surely a mistake

# What conversion did, counted in the data report (DataReport.notes), by these keys.
NOTE_BLOCKS = "messages given as content blocks: text blocks joined"
NOTE_REASONING = "assistant turns with reasoning, kept as the assistant's thinking"
NOTE_REASONING_DROPPED = ("assistant turns with reasoning: dropped, the model's chat template has no place for "
                          "thinking")
NOTE_EMPTY_REASONING = "assistant turns with an empty reasoning block: the empty block dropped"
NOTE_TAGS = "tool calls read from <tool_call> tags in the assistant's text"
NOTE_SYSTEM_TOOLS = "tool lists read from the system prompt's <tools> tags (that system prompt replaced by the template's)"
NOTE_ENCODED_ARGS = "tool-call arguments encoded twice as JSON strings: decoded"
NOTE_WEIGHT = "assistant turns with weight 0: shown to the model, not trained on"
NOTE_TOOL_BLOCKS = "tool calls and tool results given as content blocks: read as tool calls and tool turns"
class RowError(ValueError):
    """One row cannot be used: `field` names where, the message says why."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


class MediaError(RowError):
    """A row holds images, audio or video: not droppable row by row, the whole file is refused."""


def media_reason(what: str) -> str:
    return (f"{what}: ftspace trains text models only; use a text-only dataset (or remove the media column and "
            "placeholders)")


# --- detection


TOOL_CALL_TAG = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", flags=re.S)
TOOLS_TAG = re.compile(r"<tools>\s*(.*?)\s*</tools>", flags=re.S)
TOOL_RESPONSE_TAG = re.compile(r"^\s*<tool_response>\s*(.*?)\s*</tool_response>\s*$", flags=re.S)


def tool_call_tags(text: str) -> list[dict | None]:
    """Each <tool_call>{json}</tool_call> in a text (Hermes style; an unclosed last tag counts), parsed: the
    call as an object with a name, or None where the body is not valid JSON (nor a Python literal, as some
    Hermes exports write it) or names no function.

    >>> tool_call_tags('<tool_call>{"name": "f", "arguments": {}}</tool_call> <tool_call>{"name": </tool_call>')
    [{'name': 'f', 'arguments': {}}, None]
    """
    calls = []
    for body in TOOL_CALL_TAG.findall(text):
        call = loose_json(body)
        calls.append(call if isinstance(call, dict) and "name" in call else None)
    return calls


def loose_json(text: str):
    """JSON, or a Python literal ({'name': 'f'}) as Hermes-style datasets often write calls; None if neither."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


# --- validation of a canonical conversation


def validate(example: dict, notes: dict | None = None, reply_needed: bool = True) -> dict:
    """Check a canonical row and normalise it in place (roles, content blocks, reasoning, tool-call dialects,
    loss weights); raises RowError for an unusable row. `notes` counts what was converted (NOTE_* keys).
    `reply_needed` False: a conversation without an assistant reply passes (a GRPO prompt)."""
    if "text" in example:
        if not example["text"].strip():
            raise RowError("text", "empty text")
        return example
    if "chosen" in example:
        return _validate_preference(example, notes)
    if "answer" in example and "prompt" in example:
        return _validate_prompt(example, notes)
    messages = example["messages"] = split_results(as_list(example["messages"], "messages"), notes)
    if not messages:
        raise RowError("messages", "empty conversation")
    tools = example.get("tools")
    if tools is not None:
        example["tools"] = _parse_tools(tools)
    seen_user, called = False, {}
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        m = messages[i] = message(m, where)
        role = m["role"]
        if role == "system" and i > 0:
            raise RowError(f"{where}.role", "a system message may only come first")
        if not seen_user and role in ("assistant", "tool"):
            raise RowError(f"{where}.role", "the conversation must start with user (or system, then user)")
        seen_user = seen_user or role == "user"
        _normalise_content(m, where, notes)
        called.update({c["id"]: c["function"]["name"] for c in m.get("tool_calls") or () if "id" in c})
        if role == "tool" and "name" not in m and m.get("tool_call_id") in called:
            m["name"] = called[m["tool_call_id"]]
        content = m["content"]
        if role == "assistant" and not content.strip() and not m.get("tool_calls"):
            raise RowError(f"{where}.content", "empty response")
        if role == "user" and not content.strip():
            raise RowError(f"{where}.content", "empty user message")
    if "tools" not in example and messages[0]["role"] == "system" and "<tools>" in messages[0]["content"]:
        found = _tools_from_system(messages[0]["content"])
        if found:
            example["tools"] = found
            del messages[0]
            note(notes, NOTE_SYSTEM_TOOLS)
    assistants = [m for m in messages if m["role"] == "assistant"]
    if not reply_needed:
        return example
    if not assistants:
        raise RowError("messages", "no assistant reply to learn from")
    if all(m.get("weight") == 0 for m in assistants):
        raise RowError("messages", "every assistant turn has weight 0: nothing to learn (set weight 1 on at least one)")
    return example


def _validate_prompt(example: dict, notes: dict | None) -> dict:
    """A GRPO row: the prompt a valid conversation ending with the user's (or a tool's) turn."""
    conversation = {"messages": example["prompt"], **({"tools": example["tools"]} if example.get("tools") else {})}
    try:
        validate(conversation, notes, reply_needed=False)
    except RowError as e:
        raise RowError(e.field.replace("messages", "prompt", 1), e.reason) from None
    example["prompt"] = conversation["messages"]
    if conversation.get("tools"):
        example["tools"] = conversation["tools"]
    if example["prompt"][-1]["role"] == "assistant":
        raise RowError("prompt", "the prompt ends with a reply: GRPO prompts end with the user's turn")
    return example


def _validate_preference(example: dict, notes: dict | None) -> dict:
    """A preference row: prompt + chosen and prompt + rejected each a valid conversation ending in a reply."""
    example["prompt"] = split_results(as_list(example["prompt"], "prompt"), notes)
    prompt_len = len(example["prompt"])
    for name in ("chosen", "rejected"):
        conversation = {"messages": [dict(m) for m in example["prompt"]] + example[name]}
        if example.get("tools"):
            conversation["tools"] = example["tools"]
        try:
            validate(conversation, notes if name == "chosen" else None)
        except RowError as e:
            field = e.field.replace("messages[", f"{name}[") if e.field.startswith("messages[") else name
            raise RowError(field, e.reason) from None
        if conversation["messages"][-1]["role"] != "assistant":
            raise RowError(name, f"the {name} turns must end with an assistant reply")
        if name == "chosen":
            example["prompt"] = conversation["messages"][:prompt_len]
            example["tools"] = conversation.get("tools")
        example[name] = conversation["messages"][prompt_len:]
        if not example[name]:
            raise RowError(name, f"empty {name} reply")
    if not example.get("tools"):
        example.pop("tools", None)
    return example


def message(m, where: str) -> dict:
    """A raw message as {"role", "content", ...}: ShareGPT's from/value, role aliases (human, gpt, model,
    observation, ...), and ShareGPT function_call turns as tool calls."""
    if not isinstance(m, dict):
        raise RowError(where, f"must be an object with role and content, got {type(m).__name__}")
    m = dict(m)
    key = "role" if "role" in m else "from"
    who = m.pop("from", None) if key == "from" else m["role"]
    if "value" in m and "content" not in m:
        m["content"] = m.pop("value")
    role = ROLE_ALIASES.get(who.lower() if isinstance(who, str) else who)
    if role is None:
        raise RowError(f"{where}.{key}", f"unknown role {who!r}: " + ("use human, gpt, system or tool" if key == "from"
                                                                      else "use system, user, assistant or tool"))
    m["role"] = role
    if who == "function_call" and isinstance(m.get("content"), str):  # ShareGPT: the call is the turn's JSON
        calls = loose_json(m["content"])
        if calls is None:
            raise RowError(f"{where}.value", "malformed tool call: not valid JSON")
        m["tool_calls"], m["content"] = calls if isinstance(calls, list) else [calls], ""
    if isinstance(m.get("function_call"), dict):  # OpenAI's older single-call field
        m.setdefault("tool_calls", [m["function_call"]])
    return m


def _normalise_content(m: dict, where: str, notes: dict | None):
    """Content blocks joined, reasoning moved to `reasoning_content`, tool-call dialects made canonical,
    a loss weight checked; unknown keys removed. Media anywhere raises MediaError."""
    role, content = m["role"], m.get("content")
    if role == "tool" and isinstance(content, dict) and "type" not in content:  # a result object, as JSON text
        content = json.dumps(content, ensure_ascii=False)
    reasoning = None
    for key in REASONING_FIELDS:
        if isinstance(m.get(key), str) and key != "content":
            reasoning = m[key]
    if isinstance(content, dict):
        content = [content]
    if hasattr(content, "tolist"):
        content = content.tolist()
    if isinstance(content, list):
        texts, thoughts, calls, result_id = [], [], [], None
        for j, block in enumerate(content):
            if isinstance(block, str):
                texts.append(block)
                continue
            if not isinstance(block, dict):
                raise RowError(f"{where}.content[{j}]", f"a content block must be an object, got {type(block).__name__}")
            kind = block_kind(block)
            if kind is None:
                raise RowError(f"{where}.content[{j}]", "a content block needs a type and its text, e.g. "
                                                       '{"type": "text", "text": "..."}')
            if kind in MEDIA_BLOCKS:
                raise MediaError(f"{where}.content[{j}]", media_reason(f"an {kind} block"))
            body = next((block[k] for k in ("text", "value", "content", "thinking", "reasoning")
                         if isinstance(block.get(k), str)), None)
            if kind in REASONING_BLOCKS:
                thoughts.append(body or "")
            elif kind in TEXT_BLOCKS:
                texts.append(body or "")
            elif kind in TOOL_CALL_BLOCKS:
                if role != "assistant":
                    raise RowError(f"{where}.content[{j}]", f"a {kind} block in the {role}'s turn: only the "
                                                           "assistant's turns call tools")
                calls.extend(_block_calls(block, f"{where}.content[{j}]"))
            elif kind in TOOL_RESULT_BLOCKS:
                if role != "tool":
                    raise RowError(f"{where}.content[{j}]", f"a {kind} block in the {role}'s turn: tool results "
                                                           "belong in the user's or the tool's turns")
                texts.append(_result_text(block, f"{where}.content[{j}]"))
                result_id = result_id or next((block[k] for k in ("tool_use_id", "call_id", "tool_call_id", "id")
                                               if isinstance(block.get(k), str)), None)
                name = _inner(block, "functionResponse", "function_response").get("name", block.get("name"))
                if isinstance(name, str) and name:
                    m.setdefault("name", name)
            elif kind not in SKIPPED_BLOCKS:
                raise RowError(f"{where}.content[{j}].type", f"unknown content block type {kind!r}: use text, "
                                                              "reasoning, tool_call or tool_result blocks")
        note(notes, NOTE_BLOCKS)
        content = "".join(texts)
        if thoughts:
            reasoning = "\n".join(thoughts)
        if calls:
            m["tool_calls"] = list(as_list(m.get("tool_calls") or [], f"{where}.tool_calls")) + calls
            note(notes, NOTE_TOOL_BLOCKS)
        if result_id and not m.get("tool_call_id"):
            m["tool_call_id"] = result_id
    if role == "assistant" and m.get("tool_calls") is not None and m["tool_calls"] != []:
        m["tool_calls"] = [_normalise_tool_call(c, f"{where}.tool_calls[{j}]", notes)
                           for j, c in enumerate(as_list(m["tool_calls"], f"{where}.tool_calls"))]
        content = content or ""
    if content is None:
        raise RowError(f"{where}.content", "missing: every message needs its text")
    if not isinstance(content, str):
        raise RowError(f"{where}.content", f"must be text, got {type(content).__name__}")
    if role in ("user", "system") and any(p in content for p in MEDIA_PLACEHOLDERS):
        placeholder = next(p for p in MEDIA_PLACEHOLDERS if p in content)
        raise MediaError(f"{where}.content", media_reason(f"a {placeholder} placeholder"))
    if role == "assistant" and "<tool_call>" in content and not m.get("tool_calls"):
        calls = tool_call_tags(content)
        if None in calls:
            raise RowError(f"{where}.content", "malformed tool call in a <tool_call> tag: not valid JSON with a name")
        m["tool_calls"] = [_normalise_tool_call(c, f"{where}.content", notes) for c in calls]
        content = TOOL_CALL_TAG.sub("", content).strip()
        note(notes, NOTE_TAGS)
    if role == "tool":
        match = TOOL_RESPONSE_TAG.match(content)
        if match:
            content = match.group(1)
    _check_size(f"{where}.content", content)
    m["content"] = content
    if role == "assistant" and reasoning is not None:
        if reasoning.strip():
            m["reasoning_content"] = reasoning
            note(notes, NOTE_REASONING)
        else:
            note(notes, NOTE_EMPTY_REASONING)
    weight = m.get("weight", m.get("loss_weight"))
    if role == "assistant" and weight is not None:
        if weight not in (0, 1) or isinstance(weight, str):
            raise RowError(f"{where}.weight", f"must be 0 or 1, got {weight!r}")
        if weight == 0:
            m["weight"] = 0
            note(notes, NOTE_WEIGHT)
    for key in list(m):
        if key not in ("role", "content", "tool_calls", "tool_call_id", "name", "reasoning_content", "weight") \
                or m[key] is None or (key == "weight" and m[key] != 0) or (key == "tool_calls" and not m[key]):
            del m[key]
        elif key == "reasoning_content" and role != "assistant":
            del m[key]


def block_kind(block: dict) -> str | None:
    """A content block's type: its `type`, else text for a bare {"text": ...}, else Gemini's untyped parts."""
    if isinstance(block.get("type"), str):
        return block["type"]
    if any(isinstance(block.get(k), str) for k in ("text", "value")):
        return "text"
    return next((kind for key, kind in UNTYPED_BLOCKS.items() if isinstance(block.get(key), dict)), None)


def _inner(block: dict, *keys) -> dict:
    return next((block[k] for k in keys if isinstance(block.get(k), dict)), {})


def _block_calls(block: dict, where: str) -> list[dict]:
    """The tool call(s) of a content block, as calls `_normalise_tool_call` reads: Anthropic's tool_use (name,
    input), Responses' function_call (name, arguments, call_id), Gemini's functionCall (name, args), or a block
    whose value (or text) is the call's JSON (an object, or a list of them)."""
    call = _inner(block, "functionCall", "function_call", "tool_call", "function")
    if call and "function" in block:
        call = {"function": call}
    elif not call:
        call = block if isinstance(block.get("name"), str) else None
    if call is None:
        body = next((block[k] for k in ("value", "text", "content", "arguments") if isinstance(block.get(k), str)), "")
        call = loose_json(body)
        if isinstance(call, list) and call and all(isinstance(c, dict) for c in call):
            return [_block_call(c, block) for c in call]
        if not isinstance(call, dict):
            raise RowError(where, "malformed tool call block: its value is not a JSON object with a name")
    return [_block_call(call, block)]


def _block_call(call: dict, block: dict) -> dict:
    fn = call.get("function", call)
    if isinstance(fn, dict) and "arguments" not in fn:
        args = next((fn[k] for k in ("input", "args", "parameters") if k in fn), {})
        fn = {**fn, "arguments": args}
    out = {"function": fn}
    call_id = next((x[k] for x in (call, block) for k in ("id", "call_id", "tool_call_id")
                    if isinstance(x.get(k), str)), None)
    if call_id:
        out["id"] = call_id
    return out


def _result_text(block: dict, where: str) -> str:
    """A tool result block's text: a string, text blocks joined, or an object as JSON."""
    value = next((block[k] for k in ("content", "output", "result", "value", "text") if k in block),
                 _inner(block, "functionResponse", "function_response").get("response", ""))
    if isinstance(value, list):
        parts = []
        for j, part in enumerate(value):
            kind = block_kind(part) if isinstance(part, dict) else "text"
            if kind in MEDIA_BLOCKS:
                raise MediaError(f"{where}.content[{j}]", media_reason(f"an {kind} block"))
            parts.append(part if isinstance(part, str) else part.get("text", "") if kind == "text"
                         else json.dumps(part, ensure_ascii=False))
        return "".join(parts)
    if isinstance(value, str):
        return value
    return "" if value is None else json.dumps(value, ensure_ascii=False)


def split_results(messages: list, notes: dict | None = None) -> list:
    """Tool results written as blocks inside a turn (Anthropic puts its tool_result blocks in the user's turn;
    some exports put several results in one tool turn) become tool turns of their own, one per result, in
    order; the turn's other blocks stay a turn of its role."""
    out = []
    for raw in messages:
        content = raw.get("content", raw.get("value")) if isinstance(raw, dict) else None
        if hasattr(content, "tolist"):
            content = content.tolist()
        if isinstance(content, dict):
            content = [content]
        results = [isinstance(b, dict) and block_kind(b) in TOOL_RESULT_BLOCKS for b in content] \
            if isinstance(content, list) else []
        role = ROLE_ALIASES.get(str(raw.get("role", raw.get("from"))).lower()) if results else None
        if not any(results) or role not in ("user", "tool") or (role == "tool" and results == [True]):
            out.append(raw)
            continue
        note(notes, NOTE_TOOL_BLOCKS)
        rest = {k: v for k, v in raw.items() if k not in ("content", "value")}
        others = []
        for block, is_result in zip(content, results):
            if not is_result:
                others.append(block)
                continue
            if others:
                out.append({**rest, "content": others})
                others = []
            out.append({"role": "tool", "content": [block]})
        if others and any(not isinstance(b, str) or b.strip() for b in others):
            out.append({**rest, "content": others})
    return out


def last_user_text(messages: list[dict]) -> str:
    """The last user turn's text: what a person reads as a conversation's prompt ("" when there is none)."""
    return next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")


def note(notes: dict | None, key: str):
    if notes is not None:
        notes[key] = notes.get(key, 0) + 1


def _tools_from_system(text: str) -> list | None:
    """The tool list in a Hermes-style system prompt's <tools>...</tools>: a JSON (or Python) list, or
    one object per line; None when it does not parse."""
    for body in TOOLS_TAG.findall(text):  # the first block that parses ("within <tools></tools> tags" does not)
        found = loose_json(body)
        if isinstance(found, dict):
            found = [found]
        if not isinstance(found, list):
            found = [loose_json(line) for line in body.splitlines() if line.strip()]
        if found and all(isinstance(t, dict) for t in found):
            break
    else:
        return None
    try:
        return _parse_tools(found)
    except RowError:
        return None


def text_of(row: dict, key: str) -> str:
    if key not in row:
        raise RowError(key, f"column missing (columns here: {', '.join(escape(c, 60) for c in row)})")
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


def list_of(row: dict, key: str) -> list:
    return as_list(row.get(key), key)


def as_list(value, where: str) -> list:
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


def _parse_tools(tools) -> list:
    """The tools offered, as OpenAI-style functions: also Anthropic's (input_schema) and Gemini's
    (function_declarations lists)."""
    tools = as_list(tools, "tools")
    if all(isinstance(t, dict) for t in tools):  # Gemini: [{"function_declarations": [...]}, ...]
        tools = [fn for t in tools for fn in (t.get("function_declarations") or t.get("functionDeclarations") or [t])]
    parsed = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise RowError(f"tools[{i}]", "must be an object describing a function")
        fn = tool.get("function", tool)
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise RowError(f"tools[{i}]", "a tool needs a function name")
        if "input_schema" in fn and "parameters" not in fn:
            fn = {("parameters" if k == "input_schema" else k): v for k, v in fn.items() if k != "type"}
        parsed.append({"type": "function", "function": fn})
    return parsed


def _normalise_tool_call(call, where: str, notes: dict | None = None) -> dict:
    if isinstance(call, str):
        call = loose_json(call)
    if not isinstance(call, dict):
        raise RowError(where, "malformed tool call: must be an object")
    fn = call.get("function", call)
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise RowError(f"{where}.function.name", "malformed tool call: missing function name")
    args = fn.get("arguments", fn.get("parameters", {}))
    for depth in range(3):  # a JSON string, or (in some exports) a JSON string of a JSON string
        if not isinstance(args, str):
            break
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            raise RowError(f"{where}.function.arguments", "malformed tool call: arguments are not valid JSON") from None
        if depth == 1:
            note(notes, NOTE_ENCODED_ARGS)
    if not isinstance(args, dict):
        raise RowError(f"{where}.function.arguments", "malformed tool call: arguments must be a JSON object")
    out = {"type": "function", "function": {"name": fn["name"], "arguments": args}}
    if isinstance(call.get("id"), str):
        out["id"] = call["id"]
    return out
