"""Rewards for GRPO, chosen not coded: each built-in reward has a name, a plain description, the settings it
reads (RunConfig's `reward_*` fields) and the data columns it needs. A run names its rewards with weights
(`rewards: [correct_answer, format_tags:0.5]`); `check` refuses what cannot work before a run exists, and
`reward_functions` builds the functions TRL's GRPOTrainer calls (a reward that raises on one completion
scores it 0 and logs the first such error once).

Custom Python rewards (`custom:FILE.py:FUNCTION`) are for a self-hosted single-user machine only: on a shared
app no visitor names code on the server's disk (the gate refuses them).

>>> score("correct_answer", "<answer>42</answer>", answer="42", answer_extract="answer_tags")
1.0
>>> score("correct_answer", "It is 7 * 6 = 41.9999", answer="#### 42", answer_match="numeric", answer_tolerance=0.001)
1.0
>>> score("format_tags", "<think>6*7</think> <answer>42</answer>")
1.0
>>> parse(["correct_answer", "format_tags:0.5"])
[('correct_answer', 1.0), ('format_tags', 0.5)]
"""

from __future__ import annotations

import json
import math
import re
import threading
from dataclasses import dataclass

from ftspace.errors import ConfigError, escape

ANSWER_EXTRACT = ("last_number", "boxed", "answer_tags", "whole")
ANSWER_MATCH = ("exact", "numeric", "regex")


@dataclass(frozen=True)
class Reward:
    name: str
    description: str
    settings: tuple[str, ...] = ()  # the RunConfig fields it reads
    needs: tuple[str, ...] = ()  # the columns each row must carry ("answer", "tools")
    low: float = 0.0  # its range, for the plots and the card
    high: float = 1.0
    shared_ok: bool = True  # may a visitor of a shared app choose it


BUILTIN = {r.name: r for r in (
    Reward("correct_answer", "The reply's answer matches the row's reference answer: taken from the reply by "
           "reward_answer_extract (the last number, \\boxed{}, <answer> tags, or the whole reply) and compared as "
           "reward_answer_match says (exact text, numbers within reward_answer_tolerance, or the reference as a "
           "regular expression).", ("reward_answer_extract", "reward_answer_match", "reward_answer_tolerance"),
           ("answer",)),
    Reward("format_tags", "The reply is written in the tags of reward_format_tags, in that order (e.g. "
           "<think>...</think> <answer>...</answer>): 1 when nothing else is outside them, half a point shared "
           "among the tag pairs present in order otherwise.", ("reward_format_tags",)),
    Reward("format_regex", "The reply matches the regular expression reward_format_regex (searched, dots match "
           "newlines).", ("reward_format_regex",)),
    Reward("think_format", "The reply starts with its reasoning inside <think>...</think> (TRL's "
           "think_format_reward)."),
    Reward("valid_json", "The reply is valid JSON (a ```json fence around it is allowed); with reward_json_schema "
           "set, it must also match that JSON schema.", ("reward_json_schema",)),
    Reward("tool_call", "The reply is a valid call of one of the row's tools: a known name, the required arguments, "
           "no unknown ones (as <tool_call>{...}</tool_call> or a bare JSON object with name and arguments).",
           (), ("tools",)),
    Reward("length", "The reply's length in words is within reward_min_words and reward_max_words: 1 inside, "
           "falling to 0 at twice the distance outside.", ("reward_min_words", "reward_max_words")),
    Reward("no_repetition", "A penalty for repeated 3-token sequences, from 0 (none) to -1 (all repeats): "
           "against degenerate replies (TRL's repetition penalty).", low=-1.0, high=0.0),
)}
CUSTOM = "custom:"


def describe() -> list[str]:
    """Every built-in reward in a line: its name, what it scores, the settings it reads and the column each row
    needs (`ftspace train --help`, the Train tab)."""
    return [f"{r.name}: {r.description}" + (f" Needs each row's {', '.join(r.needs)}." if r.needs else "")
            for r in BUILTIN.values()]


def parse(specs) -> list[tuple[str, float]]:
    """(name, weight) for each entry: `name` (weight 1) or `name:weight`; `custom:FILE.py:FUNCTION[:weight]`."""
    out = []
    for spec in specs:
        text = str(spec).strip()
        name, weight = text, 1.0
        head, sep, tail = text.rpartition(":")
        if sep and _is_number(tail):
            name, weight = head.strip(), float(tail)
        if not name:
            raise ConfigError(f"rewards: {escape(text, 80)!r} has no reward name: write name or name:weight.")
        if not math.isfinite(weight):
            raise ConfigError(f"rewards: {escape(text, 80)!r}: the weight must be a finite number.")
        out.append((name, weight))
    return out


def check(cfg, shared: bool | None = None) -> list[tuple[str, float]]:
    """A GRPO run's rewards as (name, weight), or ConfigError in one line: unknown names, no reward with a
    non-zero weight, settings that cannot work (a regex that does not compile, a JSON schema that is not
    one), a custom reward on a shared app (refused before its path is looked at) or one whose file is missing.
    Nothing is executed here: a custom reward's file is loaded by the training process only."""
    if shared is None:
        from ftspace import env

        shared = env.multi_user()
    chosen = parse(cfg.rewards)
    if not chosen or not any(w for _, w in chosen):
        raise ConfigError("method grpo needs at least one reward with a non-zero weight: set rewards, e.g. "
                          "[correct_answer, format_tags:0.5] (`ftspace train --help` lists them).")
    for name, _ in chosen:
        if name.startswith(CUSTOM):
            if shared:
                raise ConfigError(f"rewards: {escape(name, 80)!r}: custom Python rewards run only on a self-hosted "
                                  f"single-user machine; here choose built-in ones: {', '.join(BUILTIN)}.")
            _custom_path(name)
        elif name not in BUILTIN:
            import difflib

            close = difflib.get_close_matches(name, list(BUILTIN), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"rewards: unknown reward {escape(name, 60)!r}.{hint} Built-in rewards: "
                              f"{', '.join(BUILTIN)}.")
    names = {n for n, _ in chosen}
    if "format_regex" in names:
        if not cfg.reward_format_regex:
            raise ConfigError("reward format_regex needs reward_format_regex: set the pattern a reply must match.")
        _compile(cfg.reward_format_regex, "reward_format_regex")
    if "format_tags" in names and not _tags(cfg.reward_format_tags):
        raise ConfigError("reward format_tags needs reward_format_tags: name the tags in order, e.g. 'think answer'.")
    if "valid_json" in names and cfg.reward_json_schema.strip():
        _schema(cfg.reward_json_schema)
    if "length" in names and cfg.reward_max_words and cfg.reward_min_words > cfg.reward_max_words:
        raise ConfigError(f"reward_min_words {cfg.reward_min_words} is above reward_max_words "
                          f"{cfg.reward_max_words}: lower the first or raise the second.")
    return chosen


def needed_columns(cfg) -> dict[str, str]:
    """{column: the reward that needs it} for the run's rewards (the data must carry each column)."""
    out = {}
    for name, weight in parse(cfg.rewards):
        for column in BUILTIN[name].needs if name in BUILTIN and weight else ():
            out.setdefault(column, name)
    return out


# --- the functions TRL calls


class Samples:
    """What the rewards last saw: the generation batch's prompts, completions, references and each reward's
    scores, for the run's samples (the newest batch only; the functions are called in turn on the same one)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.batch: dict = {}

    def record(self, name: str, prompts, completions, answers, scores):
        with self.lock:
            if self.batch.get("completions") is not completions:
                self.batch = {"prompts": prompts, "completions": completions, "answers": answers, "scores": {}}
            self.batch["scores"][name] = list(scores)

    def take(self, count: int) -> list[dict]:
        """Up to `count` rows of the newest batch (one completion per distinct prompt first)."""
        with self.lock:
            batch, self.batch = self.batch, {}
        if not batch:
            return []
        rows, seen = [], set()
        for i, prompt in enumerate(batch["prompts"]):
            key = _text(prompt)
            if key in seen:
                continue
            seen.add(key)
            rows.append({"prompt": key, "completion": _text(batch["completions"][i]),
                         **({"answer": str(batch["answers"][i])} if batch["answers"] else {}),
                         "rewards": {n: _rounded(s[i]) for n, s in batch["scores"].items()}})
            if len(rows) >= count:
                break
        return rows


def reward_functions(cfg, log=print, samples: Samples | None = None) -> tuple[list, list[float]]:
    """(functions, weights) for TRL's GRPOTrainer. Each function is named after its reward (TRL logs
    `rewards/<name>/mean`), scores every completion (a raise scores 0, the first error of each reward logged),
    and records its scores in `samples`."""
    functions, weights = [], []
    for name, weight in check(cfg):
        score_one = _custom(name) if name.startswith(CUSTOM) else _scorer(name, cfg)
        functions.append(_batch_function(name, score_one, log, samples))
        weights.append(weight)
    return functions, weights


def _batch_function(name: str, score_one, log, samples):
    label = reward_label(name)
    failed = []

    def fn(prompts=None, completions=None, completion_ids=None, **columns):
        answers = columns.get("answer")
        scores = []
        for i, completion in enumerate(completions):
            row = {k: v[i] for k, v in columns.items() if isinstance(v, list) and len(v) == len(completions)}
            row["completion_ids"] = completion_ids[i] if completion_ids is not None else None
            try:
                value = float(score_one(_text(completion), **row))
            except Exception as e:  # one bad completion (or a custom reward's bug) scores 0, said once
                if not failed:
                    failed.append(e)
                    log(f"reward {label} failed on a completion (scored 0; said once): {type(e).__name__}: "
                        f"{escape(str(e), 200)}")
                value = 0.0
            scores.append(value if math.isfinite(value) else 0.0)
        if samples is not None:
            shown = columns.get("prompt_shown") or prompts or [""] * len(completions)
            samples.record(label, shown, completions, answers, scores)
        return scores

    fn.__name__ = label  # TRL logs rewards/<label>/mean
    return fn


def reward_label(name: str) -> str:
    """How a reward is named in the logs, curves and samples: a custom one by its file and function, no path.

    >>> reward_label("custom:/home/me/my_rewards.py:shaped")
    'custom_my_rewards_shaped'
    """
    if not name.startswith(CUSTOM):
        return name
    where, _, function = name.removeprefix(CUSTOM).rpartition(":")
    return f"custom_{re.sub(r'[^A-Za-z0-9_]', '_', where.rsplit('/', 1)[-1].removesuffix('.py'))}_{function}"


def score_replies(cfg, replies: list[str], rows: list[dict]) -> list[dict]:
    """Each reply's score under each of the run's rewards (`reward_<name>`) and their weighted sum (`reward`, as TRL
    sums them in training), for held-out prompt rows ({"prompt", "answer", "tools"?}): the evaluation of a GRPO run.
    A reward that raises on a reply scores it 0, as in training."""
    scorers = [(name, weight, _custom(name) if name.startswith(CUSTOM) else _scorer(name, cfg))
               for name, weight in check(cfg)]
    out = []
    for reply, row in zip(replies, rows):
        tools = json.dumps(row["tools"]) if row.get("tools") else ""
        per = {}
        for name, _, fn in scorers:
            try:
                value = float(fn(reply, answer=row.get("answer") or "", tools=tools, completion_ids=None))
            except Exception:
                value = 0.0
            per[f"reward_{reward_label(name)}"] = value if math.isfinite(value) else 0.0
        per["reward"] = sum(weight * per[f"reward_{reward_label(name)}"] for name, weight, _ in scorers)
        out.append(per)
    return out


SETTINGS = dict(reward_answer_extract="last_number", reward_answer_match="exact", reward_answer_tolerance=1e-6,
                reward_format_tags="think answer", reward_format_regex="", reward_json_schema="", reward_min_words=0,
                reward_max_words=0)  # as RunConfig's defaults (tests/test_rewards.py holds them equal)


def score(name: str, reply: str, answer: str | None = None, tools=None, **settings) -> float:
    """One reply's score under a built-in reward; settings by their RunConfig names without `reward_`."""
    from types import SimpleNamespace

    cfg = SimpleNamespace(**{**SETTINGS, **{f"reward_{k}": v for k, v in settings.items()}})
    return float(_scorer(name, cfg)(reply, answer=answer, tools=tools, completion_ids=None))


def _scorer(name: str, cfg):
    """The per-completion function of a built-in reward: (reply, **row) -> float."""
    if name == "correct_answer":
        extract, match, tolerance = cfg.reward_answer_extract, cfg.reward_answer_match, cfg.reward_answer_tolerance
        return lambda reply, answer=None, **_: float(answer_matches(extract_answer(reply, extract), answer, match,
                                                                    tolerance))
    if name == "format_tags":
        tags = _tags(cfg.reward_format_tags)
        return lambda reply, **_: tags_score(reply, tags)
    if name == "format_regex":
        pattern = _compile(cfg.reward_format_regex, "reward_format_regex")
        return lambda reply, **_: float(bool(pattern.search(reply)))
    if name == "think_format":
        from trl.rewards import think_format_reward

        return lambda reply, **_: think_format_reward([[{"content": reply}]])[0]
    if name == "valid_json":
        validator = _schema(cfg.reward_json_schema) if cfg.reward_json_schema.strip() else None
        return lambda reply, **_: json_score(reply, validator)
    if name == "tool_call":
        return lambda reply, tools=None, **_: tool_call_score(reply, tools)
    if name == "length":
        low, high = cfg.reward_min_words, cfg.reward_max_words
        return lambda reply, **_: length_score(len(reply.split()), low, high)
    if name == "no_repetition":
        from trl.rewards import get_repetition_penalty_reward

        penalty = get_repetition_penalty_reward(ngram_size=3, max_penalty=-1.0)
        return lambda reply, completion_ids=None, **_: penalty([list(completion_ids) if completion_ids is not None
                                                                else reply.split()])[0]
    raise ConfigError(f"rewards: unknown reward {escape(name, 60)!r}.")


# --- what each reward measures (pure functions)


def reference_answer(text) -> str:
    """A reference as written in datasets: GSM8K's reasoning then '#### 72', a \\boxed{} answer, or the answer.

    >>> reference_answer("She sold 48 + 24 = 72 clips.\\n#### 72")
    '72'
    """
    text = "" if text is None else str(text)
    if "####" in text:
        return text.rsplit("####", 1)[1].strip()
    boxed = _last_boxed(text)
    return boxed.strip() if boxed is not None else text.strip()


def extract_answer(reply: str, how: str) -> str | None:
    """The answer a reply gives: its last number, its last \\boxed{}, its last <answer> tags, or all of it.

    >>> extract_answer("3 + 4 = 7, so 7 apples.", "last_number")
    '7'
    >>> extract_answer("so \\\\boxed{\\\\frac{1}{2}}", "boxed")
    '\\\\frac{1}{2}'
    """
    if how == "last_number":
        numbers = re.findall(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+", reply)
        return numbers[-1].replace(",", "") if numbers else None
    if how == "boxed":
        return _last_boxed(reply)
    if how == "answer_tags":
        found = re.findall(r"<answer>(.*?)</answer>", reply, re.DOTALL)
        return found[-1].strip() if found else None
    return reply.strip()


def answer_matches(given: str | None, reference, how: str, tolerance: float = 1e-6) -> bool:
    """Does the answer given match the reference (exact text ignoring case, spaces and a final period; numbers
    within a relative tolerance; or the reference as a regular expression the whole answer matches)?"""
    if given is None or reference is None:
        return False
    expected = reference_answer(reference)
    if how == "numeric":
        a, b = _number(given), _number(expected)
        return a is not None and b is not None and abs(a - b) <= tolerance * max(1.0, abs(b))
    if how == "regex":
        return re.fullmatch(expected, given.strip(), re.IGNORECASE | re.DOTALL) is not None
    return _plain(given) == _plain(expected)


def tags_score(reply: str, tags: list[str]) -> float:
    """1 when the reply is the tags in order with nothing outside them; else half a point shared among the
    tag pairs present in order.

    >>> tags_score("<think>a</think><answer>b</answer>", ["think", "answer"])
    1.0
    >>> tags_score("b <answer>b</answer>", ["think", "answer"])
    0.25
    """
    whole = r"\s*" + r"\s*".join(rf"<{re.escape(t)}>.*?</{re.escape(t)}>" for t in tags) + r"\s*"
    if re.fullmatch(whole, reply, re.DOTALL):
        return 1.0
    present, at = 0, 0
    for tag in tags:
        found = re.search(rf"<{re.escape(tag)}>.*?</{re.escape(tag)}>", reply[at:], re.DOTALL)
        if found:
            present, at = present + 1, at + found.end()
    return 0.5 * present / len(tags)


def json_score(reply: str, validator=None) -> float:
    """1 for a reply that is JSON (inside a ```json fence or not), and valid against the schema if one is given."""
    text = reply.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.DOTALL)
    if fenced:
        text = fenced.group(1)
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return 0.0
    if validator is not None and not validator.is_valid(value):
        return 0.0
    return 1.0


def tool_call_score(reply: str, tools) -> float:
    """1 when every call in the reply names one of `tools` with its required arguments and no unknown ones.

    >>> tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object",
    ...          "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    >>> tool_call_score('<tool_call>{"name": "weather", "arguments": {"city": "Oslo"}}</tool_call>', tools)
    1.0
    >>> tool_call_score('{"name": "weather", "arguments": {}}', tools)
    0.0
    """
    offered = {}
    for tool in _as_json(tools) or []:
        fn = tool.get("function", tool) if isinstance(tool, dict) else {}
        if isinstance(fn, dict) and fn.get("name"):
            offered[fn["name"]] = fn.get("parameters") or fn.get("input_schema") or {}
    bodies = re.findall(r"<tool_call>(.*?)</tool_call>", reply, re.DOTALL) or [reply.strip()]
    calls = []
    for body in bodies:
        value = _as_json(body.strip())
        calls += value if isinstance(value, list) else [value]
    if not calls or not offered:
        return 0.0
    for call in calls:
        if not isinstance(call, dict) or call.get("name") not in offered:
            return 0.0
        arguments = _as_json(call.get("arguments", call.get("parameters", {})))
        if not isinstance(arguments, dict):
            return 0.0
        schema = offered[call["name"]]
        known = set((schema.get("properties") or {}).keys())
        if any(r not in arguments for r in schema.get("required") or ()) or (known and set(arguments) - known):
            return 0.0
    return 1.0


def length_score(words: int, low: int, high: int) -> float:
    """1 within [low, high] (high 0: no upper bound), falling linearly to 0 at twice the distance outside.

    >>> length_score(15, 5, 10), length_score(7, 5, 10), length_score(20, 5, 10)
    (0.5, 1.0, 0.0)
    """
    if words < low:
        return max(0.0, words / low) if low else 1.0
    if high and words > high:
        return max(0.0, 1.0 - (words - high) / high)
    return 1.0


# --- helpers


def _tags(text: str) -> list[str]:
    return [t for t in re.split(r"[\s,;/]+", text or "") if t]


def _compile(pattern: str, where: str):
    try:
        return re.compile(pattern, re.DOTALL)
    except re.error as e:
        raise ConfigError(f"{where} {escape(pattern, 60)!r} is not a valid regular expression ({e}): fix the "
                          "pattern.") from None


def _schema(text: str):
    import jsonschema

    try:
        schema = json.loads(text)
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
    except (json.JSONDecodeError, ValueError) as e:
        raise ConfigError(f"reward_json_schema is not JSON ({e}): write the schema as JSON, e.g. "
                          '{"type": "object", "required": ["name"]}.') from None
    except jsonschema.SchemaError as e:
        raise ConfigError(f"reward_json_schema is not a valid JSON schema ({escape(e.message, 120)}).") from None
    return cls(schema)


def _custom_path(spec: str):
    """(file, function name) of `custom:FILE.py:FUNCTION`, or ConfigError (the file is not read)."""
    from pathlib import Path

    where, _, function = spec.removeprefix(CUSTOM).rpartition(":")
    path = Path(where).expanduser()
    if not where or not function or path.suffix != ".py":
        raise ConfigError(f"rewards: {escape(spec, 80)!r}: write a custom reward as custom:FILE.py:FUNCTION.")
    if not path.is_file():
        raise ConfigError(f"rewards: {escape(spec, 80)!r}: no file {escape(str(path), 80)}.")
    return path, function


def _custom(spec: str):
    """`custom:FILE.py:FUNCTION`: the function (reply, **row) -> float in the owner's file (loaded here: in the
    training process of a single-user machine)."""
    import importlib.util

    path, function = _custom_path(spec)
    module_spec = importlib.util.spec_from_file_location(f"ftspace_reward_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        raise ConfigError(f"rewards: {escape(spec, 80)!r}: the file does not load ({type(e).__name__}: "
                          f"{escape(str(e), 120)}).") from None
    fn = getattr(module, function, None)
    if not callable(fn):
        raise ConfigError(f"rewards: {escape(spec, 80)!r}: {path.name} has no function {escape(function, 40)!r}.")
    return fn


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1:j]
    return None


def _number(text: str) -> float | None:
    cleaned = re.sub(r"[,$%\s]", "", text).rstrip(".")
    try:
        return float(cleaned)
    except ValueError:
        found = extract_answer(text, "last_number")
        return float(found) if found is not None and found != text else None


def _plain(text: str) -> str:
    return " ".join(str(text).casefold().split()).rstrip(".")


def _as_json(value):
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (json.JSONDecodeError, ValueError):
            return None
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _text(value) -> str:
    """A prompt or completion as text: a string, or the content of its (last) message."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        return str(value[-1].get("content", ""))
    return str(value)


def _rounded(value) -> float | None:
    return None if value is None else round(float(value), 4)


