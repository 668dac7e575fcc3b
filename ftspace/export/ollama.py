"""An Ollama Modelfile for a GGUF export: a TEMPLATE (Go template syntax) equivalent to the run's chat template,
a stop for every end-of-turn token, and the run's sampling defaults.

The TEMPLATE is derived from the chat template itself, not from a table of model families: the Jinja template is
rendered for a few conversations whose contents are markers, and the text around the markers gives each role's
prefix and suffix, the default system prompt and the generation prompt. `render` then runs the Go template (the
subset written here) on conversations with a system prompt, several turns and none, and each must give the
tokenizer's prompt string exactly, or the export fails saying where they differ. Tools the same way, where the
chat template has them (`derive`): the tool list, the assistant's calls and the tools' results, checked on
conversations with tools, their JSON aside (Ollama writes it); where they cannot be derived the TEMPLATE leaves
them out and says why.

    >>> render('{{ if .System }}S:{{ .System }};{{ end }}{{ range .Messages }}{{ if eq .Role "user" }}U:{{ .Content }};'
    ...        '{{ end }}{{ end }}A:', [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    'S:be brief;U:hi;A:'
"""

from __future__ import annotations

import itertools
import json
import re

from ftspace.export.writer import ExportError

_MARK = "\u2063{}\u2063"  # contents no template would write (invisible separators around a name)
M = _MARK.format


class Unexpressed(ValueError):
    """The chat template writes tools in a way no TEMPLATE derived here can (the reason, for the report)."""


def _render(tokenizer, messages, generation: bool, tools=None) -> str:
    return tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=generation)


def _split(text: str, names: list[str]) -> list[str]:
    """The text between the markers of `names`, in order (len(names) + 1 pieces)."""
    pieces = []
    for name in names:
        before, found, text = text.partition(M(name))
        if not found:
            raise ExportError(f"The chat template drops a {name.lower()} message's text, so no Ollama TEMPLATE can "
                              "match it: export without --ollama.")
        pieces.append(before)
    return pieces + [text]


def _without(text: str, part: str, where: str) -> str:
    if where == "prefix" and text.startswith(part):
        return text[len(part):]
    if where == "suffix" and text.endswith(part):
        return text[:len(text) - len(part)]
    raise ExportError("The chat template writes a turn differently depending on its place in the conversation, "
                      "which an Ollama TEMPLATE cannot: export without --ollama.")


def pieces(tokenizer, render=None) -> dict[str, str]:
    """Each role's text before and after its content, the default system block, the generation prompt, and what
    the first user turn alone opens with (Llama 3 writes the tools there). `render(messages, generation)`: the
    chat template (default: the tokenizer's, without tools)."""
    render = render or (lambda messages, generation: _render(tokenizer, messages, generation))
    sys_, u1, a1, u2 = ({"role": r, "content": M(n)} for r, n in
                        (("system", "SYSTEM"), ("user", "USER"), ("assistant", "ASSISTANT"), ("user", "USER2")))
    full = _split(render([sys_, u1, a1, u2], True), ["SYSTEM", "USER", "ASSISTANT", "USER2"])
    alone = _split(render([u1], False), ["USER"])
    asked = _split(render([u1], True), ["USER"])
    answered = _split(render([u1, a1], False), ["USER", "ASSISTANT"])
    out = {"system_before": full[0], "user_after": alone[1], "assistant_after": answered[2], "first_user": ""}
    out["generation"] = _without(asked[1], out["user_after"], "prefix")
    out["assistant_before"] = _without(full[2], out["user_after"], "prefix")
    out["user_before"] = _without(full[3], out["assistant_after"], "prefix")
    if out["user_before"] in full[1]:  # the system prompt in a turn of its own (ChatML, Llama 3)
        out["system_after"], _, out["first_user"] = full[1].partition(out["user_before"])
    else:  # written inside the first user turn (Gemma): what comes before that turn, then the separator
        out["system_before"] = _without(full[0], out["user_before"], "suffix")
        out["system_folded"] = full[1]
    out["default_system"] = _without(alone[0], out["user_before"] + out["first_user"], "suffix")
    if _without(full[4], out["user_after"], "prefix") != out["generation"]:
        raise ExportError("The chat template ends a conversation differently depending on its length, which an "
                          "Ollama TEMPLATE cannot: export without --ollama.")
    return out


# --- tools: the tool list, the assistant's calls and the tools' results, found with markers as above

# How templates write JSON (transformers' tojson is json.dumps): spaced, indented, compact.
_ENCODINGS = ({}, {"indent": 4}, {"indent": 2}, {"separators": (",", ":")})


def _tool(name: str) -> dict:
    return {"type": "function", "function": {"name": M(name), "description": "Looks it up.", "parameters": {
        "type": "object", "properties": {"q": {"type": "string", "description": "What"}}, "required": ["q"]}}}


def _marked_call(name: str, value: str) -> dict:
    return {"type": "function", "function": {"name": M(name), "arguments": {"q": M(value)}}}


def _dumps(obj, enc: tuple) -> str:
    """`obj` (or its function, for templates that write only a tool's function) as the template writes it."""
    part, i = enc
    return json.dumps(obj["function"] if part == "function" else obj, ensure_ascii=False, **_ENCODINGS[i])


def _encoding(text: str, obj: dict, parts=("whole", "function")) -> tuple | None:
    return next(((part, i) for part in parts for i in range(len(_ENCODINGS)) if _dumps(obj, (part, i)) in text), None)


def tool_list_renderer(tokenizer, found: dict):
    """The chat template with two tools offered, their JSON replaced by one TOOLS marker; `found` gets how a tool
    is written ("tool_json") and what separates two ("tool_sep")."""
    tools = [_tool("TOOLA"), _tool("TOOLB")]

    def render(messages, generation):
        text = _render(tokenizer, messages, generation, tools)
        if "tool_json" not in found:  # found on the first render, the same in every other
            found["tool_json"] = _encoding(text, tools[0])
        enc = found["tool_json"]
        if enc is None:
            raise Unexpressed("it does not write the tools as JSON")
        a, b = _dumps(tools[0], enc), _dumps(tools[1], enc)
        ia, ib = text.find(a), text.find(b)
        if text.count(a) != 1 or ib < ia + len(a):
            raise Unexpressed("it does not write each tool once, in order")
        if found.setdefault("tool_sep", text[ia + len(a):ib]) != text[ia + len(a):ib]:
            raise Unexpressed("it separates tools differently from one turn to the next")
        return text[:ia] + M("TOOLS") + text[ib + len(b):]
    return render


def _common(a: str, b: str, end: bool) -> str:
    n = 0
    while n < min(len(a), len(b)) and (a[-1 - n] == b[-1 - n] if end else a[n] == b[n]):
        n += 1
    return (a[len(a) - n:] if end else a[:n])


def tool_turns(tokenizer, p: dict) -> dict | None:
    """How the template writes an assistant's tool calls and the tools' results, or None when it writes no calls.
    Calls: X0 NAME CM ARGS, joined by SEP, then TRAIL; the content before them (then GAP) or dropped. Results:
    each its own turn (TOOL_PRE result TOOL_POST), or consecutive ones grouped in one turn (OPEN, then RP result
    RS joined by JOIN, then CLOSE: Qwen's <tool_response> blocks in one user turn)."""
    u1 = {"role": "user", "content": M("USER")}
    ca, cb = _marked_call("NAMEA", "ARGA"), _marked_call("NAMEB", "ARGB")

    def result(n):
        return {"role": "tool", "name": M("TNAME"), "content": M(n)}

    def assistant(content, calls):
        return {"role": "assistant", "content": content, "tool_calls": calls}
    start = _render(tokenizer, [u1], False) + p["assistant_before"]

    def body(messages):
        text = _render(tokenizer, messages, True)
        if not text.startswith(start) or not text.endswith(p["generation"]):
            raise Unexpressed("it writes a turn with tool calls unlike its other turns")
        return text[len(start):len(text) - len(p["generation"])]

    def parts(text: str, names: list[str]) -> list[str]:
        if any(text.count(M(n)) != 1 for n in names):
            raise Unexpressed(f"it does not write a {names[0].lower()} once")
        return _split(text, names)
    one = body([u1, assistant("", [ca]), result("RESA")])
    if M("NAMEA") not in one:
        return None
    out = {}
    x0, rest = parts(one, ["NAMEA"])
    out["args_json"] = _encoding(rest, ca["function"]["arguments"], ("whole",))
    if out["args_json"] is None:
        raise Unexpressed("it does not write a call's arguments as JSON")
    args_a = _dumps(ca["function"]["arguments"], out["args_json"])
    cm, _, rest = rest.partition(args_a)
    k = rest.find(p["assistant_after"])
    if k < 0:
        raise Unexpressed("it ends a turn with tool calls unlike its other turns")
    out.update(x0=x0, cm=cm, trail=rest[:k])
    called = one[:len(one) - len(rest) + k + len(p["assistant_after"])]
    out["tool_pre"], out["tool_post"] = parts(one[len(called):], ["RESA"])
    with_text = body([u1, assistant(M("ACONTENT"), [ca]), result("RESA")])
    if M("ACONTENT") not in with_text:
        out["content"], out["gap"] = "dropped", ""
    else:
        before, after = parts(with_text, ["ACONTENT"])
        lead = after.partition(M("NAMEA"))[0]  # the gap after the text, then what opens a call
        if before or not lead.endswith(x0):
            raise Unexpressed("it writes an assistant's text around its tool calls in a way not derived here")
        out["content"], out["gap"] = "before", lead[:len(lead) - len(x0)]
    try:
        two = body([u1, assistant("", [ca, cb]), result("RESA"), result("RESB")])
    except Unexpressed:
        raise
    except Exception:  # noqa: BLE001 - a template that allows one call per turn raises (Llama 3.1)
        out["sep"] = None
        two = body([u1, assistant("", [ca]), result("RESA"), result("RESB")])
        results = two[len(called):]
    else:
        first = x0 + M("NAMEA") + cm + args_a
        y, rest = parts(two[len(first):], ["NAMEB"]) if two.startswith(first) else ("", "")
        args_b = _dumps(cb["function"]["arguments"], out["args_json"])
        tail = cm + args_b + out["trail"] + p["assistant_after"]
        if not y.endswith(x0) or not rest.startswith(tail):
            raise Unexpressed("it joins two tool calls in a way not derived here")
        out["sep"] = y[:len(y) - len(x0)]
        results = rest[len(tail):]
    pre, mid, post = parts(results, ["RESA", "RESB"])
    if (pre, post) != (out["tool_pre"], out["tool_post"]):
        raise Unexpressed("it writes two results unlike one")
    quoted = body([u1, assistant("", [ca]), {**result("RESA"), "content": M("RESA") + '"'}])
    out["result_json"] = M("RESA") + '\\"' in quoted  # Llama 3 writes a result as a JSON string
    if out["result_json"]:
        if not (pre.endswith('"') and post.startswith('"') and mid[:1] == mid[-1:] == '"'):
            raise Unexpressed("it escapes a result's text in a way not derived here")
        out["tool_pre"], out["tool_post"], mid = pre[:-1], post[1:], mid[1:-1]
    if mid != out["tool_post"] + out["tool_pre"]:  # grouped in one turn
        rs, rp = _common(out["tool_post"], mid, False), _common(out["tool_pre"], mid, True)
        rp = rp[max(0, len(rs) + len(rp) - len(mid)):]
        out.update(rs=rs, rp=rp, join=mid[len(rs):len(mid) - len(rp)],
                   open=out["tool_pre"][:len(out["tool_pre"]) - len(rp)], close=out["tool_post"][len(rs):])
    return out


def _literal(text: str) -> str:
    """Template text written so Go's parser reads it back unchanged."""
    return text.replace("{{", '{{ "{{" }}')


def _text(text: str, tools_code: str = "") -> str:
    """A piece as template text: literal, with the tool list and the tool's name where the markers stand."""
    return _literal(text).replace(M("TOOLS"), tools_code).replace(M("TNAME"), "{{ .ToolName }}")


def go_template(p: dict[str, str], bos: str = "", turns: dict | None = None, tools: dict | None = None) -> str:
    """The Ollama TEMPLATE for `pieces` (p); `bos`: the BOS text the runtime adds itself, left out of the template;
    `turns`: how tool calls and results are written (`tool_turns`); `tools`: the pieces with tools offered and how
    the tool list is written (then the TEMPLATE writes those when a request has tools, the others when not)."""
    plain = _conversation(p, bos, turns)
    if not tools:
        return plain
    part = "$t.Function" if tools["tool_json"][0] == "function" else "$t"
    code = ("{{ range $k, $t := $.Tools }}{{ if $k }}" + _literal(tools["tool_sep"]) + "{{ end }}{{ json " + part
            + " }}{{ end }}")
    return "{{ if .Tools }}" + _conversation(tools["pieces"], bos, turns, code) + "{{ else }}" + plain + "{{ end }}"


def _conversation(p: dict[str, str], bos: str, turns: dict | None, tools_code: str = "") -> str:
    def text(piece):
        return _text(piece, tools_code)
    system_before = _without(p["system_before"], bos, "prefix") if bos else p["system_before"]
    default = _without(p["default_system"], bos, "prefix") if bos else p["default_system"]
    if "system_folded" in p:  # the system prompt opens the first user message (.Messages holds it at index 0)
        system = "{{ if .System }}" + text(system_before) + "{{ else }}" + text(default) + "{{ end }}"
        folded = "{{ if and $.System (eq $i 1) }}{{ $.System }}" + text(p["system_folded"]) + "{{ end }}"
    else:
        system = ("{{ if .System }}" + text(system_before) + "{{ .System }}" + text(p["system_after"])
                  + "{{ else }}" + text(default) + "{{ end }}")
        folded = ""
    first = ""
    if p.get("first_user"):
        system += "{{ $first := true }}"
        first = "{{ if $first }}" + text(p["first_user"]) + "{{ $first = false }}{{ end }}"
    grouped = bool(turns and "join" in turns)
    assistant = "{{ .Content }}"
    tool = ""
    if turns:
        gap = "{{ if .Content }}" + _literal(turns["gap"]) + "{{ end }}" if turns["gap"] else ""
        content = "{{ .Content }}" + gap if turns["content"] == "before" else ""
        calls = ("{{ range $k, $c := .ToolCalls }}" + ("{{ if $k }}" + _literal(turns["sep"]) + "{{ end }}"
                                                         if turns["sep"] else "")
                 + _literal(turns["x0"]) + "{{ $c.Function.Name }}" + _literal(turns["cm"])
                 + "{{ $c.Function.Arguments }}{{ end }}" + _literal(turns["trail"]))
        assistant = "{{ if .ToolCalls }}" + content + calls + "{{ else }}{{ .Content }}{{ end }}"
        result = "{{ json .Content }}" if turns["result_json"] else "{{ .Content }}"
        if grouped:
            tool = ('{{ else if eq .Role "tool" }}{{ if eq $prev "tool" }}' + text(turns["join"]) + "{{ else }}"
                    + text(turns["open"]) + "{{ end }}" + text(turns["rp"]) + result + text(turns["rs"]))
        else:
            tool = '{{ else if eq .Role "tool" }}' + text(turns["tool_pre"]) + result + text(turns["tool_post"])
    close = ""
    if grouped:
        system += '{{ $prev := "" }}'
        close = "{{ if eq $prev \"tool\" }}" + text(turns["close"]) + "{{ end }}"
    return (system + "{{ range $i, $m := .Messages }}"
            + ('{{ if and (eq $prev "tool") (ne .Role "tool") }}' + text(turns["close"]) + "{{ end }}"
               if grouped else "")
            + '{{ if eq .Role "user" }}' + text(p["user_before"]) + folded + first
            + "{{ .Content }}" + text(p["user_after"]) + '{{ else if eq .Role "assistant" }}'
            + text(p["assistant_before"]) + assistant + text(p["assistant_after"]) + tool + "{{ end }}"
            + ("{{ $prev = .Role }}" if grouped else "") + "{{ end }}" + close + text(p["generation"]))


# --- a renderer for the Go template subset above (Ollama's own engine is Go's text/template)

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


class GoJSON(dict):
    """A value Ollama writes as JSON (a tool, a call's arguments): here it writes `text`, the placeholder the check
    puts where the chat template wrote that JSON (Go writes it compact, in its own key order)."""

    def __init__(self, value: dict, text: str):
        super().__init__(value)
        self.text = text

    def __str__(self):
        return self.text


def render(template: str, messages: list[dict], tools: list[dict] | None = None) -> str:
    """`template` rendered as Ollama renders a chat: `.System` the system prompt, `.Messages` every message (the
    system one too) with `.Role`, `.Content`, `.ToolCalls` (`.Function.Name`, `.Function.Arguments`) and
    `.ToolName`, `.Tools` the tools offered. Supports literals, `if`/`else if`/`else`/`end`, `range` (with
    `$i, $x :=`), variables declared and assigned, `eq`/`ne`/`and`/`or`/`not`/`json`, parentheses, field paths
    and string and integer constants; anything else raises ValueError. A tool writes TOOL<i> (its function:
    FUNCTION<i>) and the n-th call's arguments ARGS<n>, between markers (see `check`)."""
    tokens, pos = [], 0
    for m in _ACTION.finditer(template):
        tokens.append(("text", template[pos:m.start()]))
        tokens.append(("action", m.group(2), bool(m.group(1)), bool(m.group(3))))
        pos = m.end()
    tokens.append(("text", template[pos:]))
    for i, t in enumerate(tokens):  # trim markers: {{- eats the whitespace before, -}} the whitespace after
        if t[0] == "action" and t[2] and i and tokens[i - 1][0] == "text":
            tokens[i - 1] = ("text", tokens[i - 1][1].rstrip())
        if t[0] == "action" and t[3] and i + 1 < len(tokens) and tokens[i + 1][0] == "text":
            tokens[i + 1] = ("text", tokens[i + 1][1].lstrip())
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    body, end = _block(tokens, 0)
    if end != len(tokens):
        raise ValueError("unbalanced {{ end }}")
    calls = itertools.count()
    go_messages = [{"Role": m["role"], "Content": m["content"], "ToolName": m.get("name", ""),
                    "ToolCalls": [{"Function": {"Name": c["function"]["name"], "Arguments": GoJSON(
                        c["function"]["arguments"], M(f"ARGS{next(calls)}"))}} for c in m.get("tool_calls") or ()]}
                   for m in messages]
    go_tools = [GoJSON({"Type": "function", "Function": GoJSON(t["function"], M(f"FUNCTION{i}"))}, M(f"TOOL{i}"))
                for i, t in enumerate(tools or ())]
    top = {"System": system, "Messages": go_messages, "Tools": go_tools}
    return _run(body, {"$": top, ".": top, "vars": {}})


def _block(tokens, i):
    """Parse until an `end`/`else` at this level: ([nodes], index of that token)."""
    nodes = []
    while i < len(tokens):
        t = tokens[i]
        if t[0] == "text":
            nodes.append(("text", t[1]))
            i += 1
            continue
        action = t[1]
        if action == "end" or action.startswith("else"):
            return nodes, i
        if action.startswith("if "):
            branches, cond = [], action[3:]
            while True:
                inner, i = _block(tokens, i + 1)
                branches.append((cond, inner))
                closing = tokens[i][1] if i < len(tokens) else None
                if closing == "end":
                    break
                if closing == "else":
                    cond = None
                elif closing and closing.startswith("else if "):
                    cond = closing[8:]
                else:
                    raise ValueError("if without end")
            nodes.append(("if", branches))
        elif m := re.fullmatch(r"range (?:(\$\w+), (\$\w+) := )?(\S+)", action):
            inner, i = _block(tokens, i + 1)
            if i >= len(tokens) or tokens[i][1] != "end":
                raise ValueError("range without end")
            nodes.append(("range", m.group(1), m.group(2), m.group(3), inner))
        elif m := re.fullmatch(r"(\$\w+) :?= (.+)", action, flags=re.S):
            nodes.append(("set", m.group(1), m.group(2)))
        else:
            nodes.append(("value", action))
        i += 1
    return nodes, i


_TERM = re.compile(r'\s*(\(|\)|"[^"]*"|[^\s()]+)')
_FUNCTIONS = ("eq", "ne", "and", "or", "not", "json")


def _eval(expr: str, scope: dict):
    """A pipeline-free Go template expression: a function call or one operand."""
    terms = _TERM.findall(expr)
    value, rest = _call(terms, scope)
    if rest:
        raise ValueError(f"unsupported expression {expr!r}")
    return value


def _call(terms: list[str], scope: dict):
    if terms and terms[0] in _FUNCTIONS:
        name, args, terms = terms[0], [], terms[1:]
        while terms and terms[0] != ")":
            value, terms = _operand(terms, scope)
            args.append(value)
        if name == "eq":
            return all(a == args[0] for a in args[1:]), terms
        if name == "ne":
            return args[0] != args[1], terms
        if name == "and":
            return next((a for a in args if not a), args[-1]), terms
        if name == "or":
            return next((a for a in args if a), args[-1]), terms
        if name == "json":  # Go's json.Marshal: a string quoted, with <, > and & escaped
            return (json.dumps(args[0], ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")
                    .replace("&", "\\u0026") if isinstance(args[0], str) else str(args[0])), terms
        return not args[0], terms
    return _operand(terms, scope)


def _operand(terms: list[str], scope: dict):
    head, rest = terms[0], terms[1:]
    if head == "(":
        value, rest = _call(rest, scope)
        if not rest or rest[0] != ")":
            raise ValueError("unbalanced parentheses")
        return value, rest[1:]
    if head.startswith('"'):
        return head[1:-1], rest
    if head.isdigit():
        return int(head), rest
    if head in ("true", "false"):
        return head == "true", rest
    root, *path = head.split(".")
    if root == "$":
        value = scope["$"]
    elif root.startswith("$"):
        value = scope["vars"][root]
    elif root == "":
        value = scope["."]
    else:
        raise ValueError(f"unsupported term {head!r}")
    for field in (f for f in path if f):
        value = value[field]
    return value, rest


def _run(nodes, scope: dict) -> str:
    out = []
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "value":
            out.append(str(_eval(node[1], scope)))
        elif node[0] == "set":
            scope["vars"][node[1]] = _eval(node[2], scope)
        elif node[0] == "if":
            for cond, inner in node[1]:
                if cond is None or _eval(cond, scope):
                    out.append(_run(inner, scope))
                    break
        else:
            _, index, item, over, inner = node
            for i, value in enumerate(_eval(over, scope) or ()):
                if index:
                    scope["vars"].update({index: i, item: value})
                out.append(_run(inner, {**scope, ".": value}))
    return "".join(out)


CHECKS = (  # conversations the TEMPLATE must render exactly as the chat template does
    [{"role": "system", "content": "You answer in one word."}, {"role": "user", "content": "Capital of France?"},
     {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And of Italy?"}],
    [{"role": "user", "content": "Hello there"}],
    [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}, {"role": "user", "content": "Sure?"}],
)


WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {
                                                "type": "string", "description": "The city"}}, "required": ["city"]}}}
CLOCK = {"type": "function", "function": {"name": "get_time", "description": "Local time in a city", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def _weather(city: str) -> dict:
    return {"type": "function", "function": {"name": "get_weather", "arguments": {"city": city}}}


TOOL_CHECKS = (  # (tools offered, conversation): a call, its result, the answer, and more; parallel calls; none
    ([WEATHER, CLOCK], [
        {"role": "system", "content": "You are brief."}, {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "", "tool_calls": [_weather("Oslo")]},
        {"role": "tool", "name": "get_weather", "content": '{"temp": 3}'},
        {"role": "assistant", "content": "3 degrees in Oslo."}, {"role": "user", "content": "And the time there?"}]),
    ([WEATHER], [
        {"role": "user", "content": "Weather in Lima and Rome?"},
        {"role": "assistant", "content": "Checking both.", "tool_calls": [_weather("Lima"), _weather("Rome")]},
        {"role": "tool", "name": "get_weather", "content": '{"temp": 19}'},
        {"role": "tool", "name": "get_weather", "content": '{"temp": 17}'}]),
    ([WEATHER], [{"role": "user", "content": "Hello"}]),
    (None, [{"role": "user", "content": "Weather in Kyiv?"},
            {"role": "assistant", "content": "", "tool_calls": [_weather("Kyiv")]},
            {"role": "tool", "name": "get_weather", "content": '{"temp": -2}'}]),
)


def _conversations(tools: dict | None, turns: dict | None) -> list[tuple]:
    """CHECKS, and the TOOL_CHECKS the template can express (one call a turn where it allows only one)."""
    out = [(None, messages) for messages in CHECKS]
    for offered, messages in TOOL_CHECKS:
        calls = any(m.get("tool_calls") for m in messages)
        if (offered and not tools) or (calls and not turns):
            continue
        if calls and turns["sep"] is None:
            messages = [{**m, "tool_calls": m["tool_calls"][:1]} if m.get("tool_calls") else m for m in messages]
        out.append((offered, messages))
    return out


def _placeholders(text: str, offered, messages, tools: dict | None, turns: dict | None) -> str:
    """The chat template's text with each tool's JSON and each call's arguments replaced by the placeholders
    `render` writes: Ollama writes that JSON itself (compact, in Go's key order), no TEMPLATE decides it."""
    for i, tool in enumerate(offered or ()):
        name = "FUNCTION" if tools["tool_json"][0] == "function" else "TOOL"
        text = text.replace(_dumps(tool, tools["tool_json"]), M(f"{name}{i}"), 1)
    calls = [c for m in messages for c in m.get("tool_calls") or ()]
    for n, call in enumerate(calls):
        text = text.replace(_dumps(call["function"]["arguments"], turns["args_json"]), M(f"ARGS{n}"), 1)
    return text


def check(tokenizer, template: str, bos: str = "", tools: dict | None = None, turns: dict | None = None) -> int:
    """Every conversation of CHECKS (and with `tools`/`turns`, the TOOL_CHECKS they cover) rendered by `template`
    (after the runtime's `bos`) equals the tokenizer's prompt string, JSON aside; the number checked, or
    ExportError with the first difference."""
    conversations = _conversations(tools, turns)
    for offered, messages in conversations:
        want = _placeholders(_render(tokenizer, messages, True, offered), offered, messages, tools, turns)
        got = bos + render(template, messages, offered)
        if got != want:
            at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            what = f"{len(messages)}-message conversation" + (" with tools" if offered or turns and any(
                m.get("tool_calls") for m in messages) else "")
            raise ExportError(f"The Ollama TEMPLATE renders a {what} differently from the chat template at character "
                              f"{at} ({want[at:at + 30]!r} expected, {got[at:at + 30]!r} written): export without "
                              "--ollama.")
    return len(conversations)


def derive(tokenizer, bos: str = "", p: dict | None = None) -> dict:
    """The checked TEMPLATE for this tokenizer's chat template: {"template", "pieces", "checked" (conversations),
    "tools" (what of tools it writes, or why not)}. With tools where the chat template has them and they can be
    derived; otherwise without, saying why. ExportError when even the plain conversations cannot match.
    `p`: its `pieces`, when the caller has them already."""
    p = p or pieces(tokenizer)
    plain = go_template(p, bos)
    out = {"template": plain, "pieces": p, "checked": check(tokenizer, plain, bos),
           "tools": "none in the chat template"}
    probe = [{"role": "user", "content": "Hi"}]
    try:
        listed = _render(tokenizer, probe, True, [WEATHER]) != _render(tokenizer, probe, True)
        try:
            turns = tool_turns(tokenizer, p)
        except Unexpressed:
            raise
        except Exception:  # noqa: BLE001 - the template refuses a tool's turn (Gemma: roles must alternate)
            if not listed:
                return out
            raise
        if not turns and not listed:
            return out
        tools = {}
        if listed:
            tools["pieces"] = pieces(tokenizer, tool_list_renderer(tokenizer, tools))
        template = go_template(p, bos, turns, tools or None)
        checked = check(tokenizer, template, bos, tools or None, turns)
    except (Unexpressed, ExportError) as e:
        out["tools"] = f"not written (the chat template's tools: {str(e).rstrip('.').split(': export without')[0]})"
        return out
    except Exception as e:  # noqa: BLE001 - a template that raises on a conversation with tools
        out["tools"] = f"not written (the chat template raised {type(e).__name__} on a conversation with tools)"
        return out
    what = ["the tool list"] * bool(listed) + ["tool calls" + ("" if turns and turns["sep"] is not None else
                                                               ", one a turn")] * bool(turns) + \
        ["their results"] * bool(turns)
    out.update(template=template, checked=checked, tools=", ".join(what))
    return out


def stops(tokenizer, p: dict[str, str], eos_ids: list[int]) -> list[str]:
    """Every end-of-turn token: the special tokens that close an assistant turn, and each end-of-sequence token."""
    special = [t.content for t in tokenizer.added_tokens_decoder.values() if t.special]
    found = [t for t in special if t in p["assistant_after"]]
    found += [tokenizer.convert_ids_to_tokens(i) for i in eos_ids]
    return list(dict.fromkeys(t for t in found if t))


def modelfile(gguf_name: str, template: str, stop: list[str], sampling: dict) -> str:
    """The Modelfile text: FROM the GGUF beside it, the TEMPLATE, the stops and the sampling defaults."""
    if '"""' in template:
        raise ExportError('The chat template contains """, which a Modelfile cannot quote: export without --ollama.')
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{template}"""']
    lines += [f'PARAMETER stop "{s}"' for s in stop]
    lines += [f"PARAMETER temperature {sampling['temperature']}", f"PARAMETER top_p {sampling['top_p']}"]
    return "\n".join(lines) + "\n"
