"""An Ollama Modelfile for a GGUF export: a TEMPLATE (Go template syntax) equivalent to the run's chat template,
a stop for every end-of-turn token, and the run's sampling defaults.

The TEMPLATE is derived from the chat template itself, not from a table of model families: the Jinja template is
rendered for a few conversations whose contents are markers, and the text around the markers gives each role's
prefix and suffix, the default system prompt and the generation prompt. `render` then runs the Go template (the
subset written here) on conversations with a system prompt, several turns and none, and each must give the
tokenizer's prompt string exactly, or the export fails saying where they differ.

    >>> render('{{ if .System }}S:{{ .System }};{{ end }}{{ range .Messages }}{{ if eq .Role "user" }}U:{{ .Content }};'
    ...        '{{ end }}{{ end }}A:', [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    'S:be brief;U:hi;A:'
"""

from __future__ import annotations

import re

from ftspace.export.writer import ExportError

_MARK = "\u2063{}\u2063"  # contents no template would write (invisible separators around a name)


def _render(tokenizer, messages, generation: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)


def _split(text: str, names: list[str]) -> list[str]:
    """The text between the markers of `names`, in order (len(names) + 1 pieces)."""
    pieces = []
    for name in names:
        before, found, text = text.partition(_MARK.format(name))
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


def pieces(tokenizer) -> dict[str, str]:
    """Each role's text before and after its content, the default system block and the generation prompt."""
    sys_, u1, a1, u2 = ({"role": r, "content": _MARK.format(n)} for r, n in
                        (("system", "SYSTEM"), ("user", "USER"), ("assistant", "ASSISTANT"), ("user", "USER2")))
    full = _split(_render(tokenizer, [sys_, u1, a1, u2], True), ["SYSTEM", "USER", "ASSISTANT", "USER2"])
    alone = _split(_render(tokenizer, [u1], False), ["USER"])
    asked = _split(_render(tokenizer, [u1], True), ["USER"])
    answered = _split(_render(tokenizer, [u1, a1], False), ["USER", "ASSISTANT"])
    out = {"system_before": full[0], "user_after": alone[1], "assistant_after": answered[2]}
    out["generation"] = _without(asked[1], out["user_after"], "prefix")
    out["assistant_before"] = _without(full[2], out["user_after"], "prefix")
    out["user_before"] = _without(full[3], out["assistant_after"], "prefix")
    if full[1].endswith(out["user_before"]):  # the system prompt in a turn of its own (ChatML, Llama 3)
        out["system_after"] = _without(full[1], out["user_before"], "suffix")
    else:  # written inside the first user turn (Gemma): what comes before that turn, then the separator
        out["system_before"] = _without(full[0], out["user_before"], "suffix")
        out["system_folded"] = full[1]
    out["default_system"] = _without(alone[0], out["user_before"], "suffix")
    if _without(full[4], out["user_after"], "prefix") != out["generation"]:
        raise ExportError("The chat template ends a conversation differently depending on its length, which an "
                          "Ollama TEMPLATE cannot: export without --ollama.")
    return out


def _literal(text: str) -> str:
    """Template text written so Go's parser reads it back unchanged."""
    return text.replace("{{", '{{ "{{" }}')


def go_template(p: dict[str, str], bos: str = "") -> str:
    """The Ollama TEMPLATE for `pieces` (p); `bos`: the BOS text the runtime adds itself, left out of the template."""
    system_before = _without(p["system_before"], bos, "prefix") if bos else p["system_before"]
    default = _without(p["default_system"], bos, "prefix") if bos else p["default_system"]
    if "system_folded" in p:  # the system prompt opens the first user message (.Messages holds it at index 0)
        system = "{{ if .System }}" + _literal(system_before) + "{{ else }}" + _literal(default) + "{{ end }}"
        folded = "{{ if and $.System (eq $i 1) }}{{ $.System }}" + _literal(p["system_folded"]) + "{{ end }}"
    else:
        system = ("{{ if .System }}" + _literal(system_before) + "{{ .System }}" + _literal(p["system_after"])
                  + "{{ else }}" + _literal(default) + "{{ end }}")
        folded = ""
    return (system + '{{ range $i, $m := .Messages }}{{ if eq .Role "user" }}' + _literal(p["user_before"]) + folded
            + "{{ .Content }}" + _literal(p["user_after"]) + '{{ else if eq .Role "assistant" }}'
            + _literal(p["assistant_before"]) + "{{ .Content }}" + _literal(p["assistant_after"]) + "{{ end }}{{ end }}"
            + _literal(p["generation"]))


# --- a renderer for the Go template subset above (Ollama's own engine is Go's text/template)

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


def render(template: str, messages: list[dict]) -> str:
    """`template` rendered as Ollama renders a chat: `.System` the system prompt, `.Messages` every message (the
    system one too), `.Role`/`.Content` inside `range` (`range $i, $m := .Messages` binds the index). Supports
    literals, `if`/`else if`/`else`/`end`, `eq`/`and`/`or`/`not`, parentheses, `$.Field`, variables and string and
    integer constants; anything else raises ValueError."""
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
    top = {"System": system, "Messages": [{"Role": m["role"], "Content": m["content"]} for m in messages]}
    return _run(body, {"$": top, ".": top})


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
        elif m := re.fullmatch(r"range (?:(\$\w+), (\$\w+) := )?\.Messages", action):
            inner, i = _block(tokens, i + 1)
            if i >= len(tokens) or tokens[i][1] != "end":
                raise ValueError("range without end")
            nodes.append(("range", m.group(1), m.group(2), inner))
        else:
            nodes.append(("value", action))
        i += 1
    return nodes, i


_TERM = re.compile(r'\s*(\(|\)|"[^"]*"|[^\s()]+)')


def _eval(expr: str, scope: dict):
    """A pipeline-free Go template expression: a function call (eq, and, or, not) or one operand."""
    terms = _TERM.findall(expr)
    value, rest = _call(terms, scope)
    if rest:
        raise ValueError(f"unsupported expression {expr!r}")
    return value


def _call(terms: list[str], scope: dict):
    if terms and terms[0] in ("eq", "and", "or", "not"):
        name, args, terms = terms[0], [], terms[1:]
        while terms and terms[0] != ")":
            value, terms = _operand(terms, scope)
            args.append(value)
        if name == "eq":
            return all(a == args[0] for a in args[1:]), terms
        if name == "and":
            return next((a for a in args if not a), args[-1]), terms
        if name == "or":
            return next((a for a in args if a), args[-1]), terms
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
    if head.startswith("$."):
        return scope["$"][head[2:]], rest
    if head.startswith("$"):
        return scope[head], rest
    if head.startswith("."):
        return scope["."][head[1:]], rest
    raise ValueError(f"unsupported term {head!r}")


def _run(nodes, scope: dict) -> str:
    out = []
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "value":
            out.append(str(_eval(node[1], scope)))
        elif node[0] == "if":
            for cond, inner in node[1]:
                if cond is None or _eval(cond, scope):
                    out.append(_run(inner, scope))
                    break
        else:
            _, index, item, inner = node
            for i, m in enumerate(scope["$"]["Messages"]):
                out.append(_run(inner, {**scope, ".": m, **({index: i, item: m} if index else {})}))
    return "".join(out)


CHECKS = (  # conversations the TEMPLATE must render exactly as the chat template does
    [{"role": "system", "content": "You answer in one word."}, {"role": "user", "content": "Capital of France?"},
     {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And of Italy?"}],
    [{"role": "user", "content": "Hello there"}],
    [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}, {"role": "user", "content": "Sure?"}],
)


def check(tokenizer, template: str, bos: str = "") -> int:
    """Every conversation of CHECKS rendered by `template` (after the runtime's `bos`) equals the tokenizer's
    prompt string; the number checked, or ExportError with the first difference."""
    for messages in CHECKS:
        want = _render(tokenizer, messages, True)
        got = bos + render(template, messages)
        if got != want:
            at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            raise ExportError(f"The Ollama TEMPLATE renders a {len(messages)}-message conversation differently from "
                              f"the chat template at character {at} ({want[at:at + 30]!r} expected, "
                              f"{got[at:at + 30]!r} written): export without --ollama.")
    return len(CHECKS)


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
