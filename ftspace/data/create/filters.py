"""What keeps generated rows worth training on: replies parsed into rows, repeats and leaks found.

Pure functions; each step of a creation run drops rows with a reason the report lists.

>>> similarity("What is the capital of France?", "what is the capital of france")
1.0
>>> round(similarity("What is the capital of France?", "What is the capital of Spain?"), 2)
0.67
>>> parse_items('Sure! ```json\\n[{"question": "Q1?", "answer": "A1"}]\\n```', ("question", "answer"))
[{'question': 'Q1?', 'answer': 'A1'}]
"""

from __future__ import annotations

import json
import re

from ftspace.data.messages import RowError

REFUSALS = re.compile(r"^\s*(i'?m sorry|sorry,|i can(?:no|')t|i am (?:unable|not able)|as an ai\b|i won'?t)", re.I)
FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
# Aliases a teacher may use for the two fields of a pair
FIELD_ALIASES = {"question": ("question", "q", "instruction", "prompt", "input", "query"),
                 "answer": ("answer", "a", "output", "response", "completion", "reply")}


class ReplyError(RowError):
    """A teacher reply that yields no row at all (not JSON, a refusal)."""


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def shingles(text: str) -> frozenset:
    """Word pairs (single words for a text under three words): what near-duplicate detection compares."""
    w = words(text)
    return frozenset(zip(w, w[1:])) if len(w) >= 3 else frozenset(w)


def similarity(a: str, b: str) -> float:
    """Jaccard overlap of the two texts' word pairs, 0..1 (1.0: the same words in the same order)."""
    sa, sb = shingles(a), shingles(b)
    if not sa or not sb:
        return float(words(a) == words(b))
    return _jaccard(sa, sb)


def _jaccard(sa: frozenset, sb: frozenset) -> float:
    return len(sa & sb) / len(sa | sb)


class Seen:
    """Texts kept so far (seeds, earlier rows, evaluation rows), each with a label; `match` finds a repeat."""

    def __init__(self, threshold: float):
        self.threshold, self._items = threshold, []  # [(normalised words, shingles, label)]

    def add(self, text: str, label: str):
        self._items.append((tuple(words(text)), shingles(text), label))

    def match(self, text: str) -> tuple[str, str] | None:
        """(kind, label) of the first kept text this one repeats: kind 'exact' or 'near'; None if new."""
        w, s = tuple(words(text)), shingles(text)
        for other_w, other_s, label in self._items:
            if w == other_w:
                return "exact", label
            if s and other_s and _jaccard(s, other_s) >= self.threshold:
                return "near", label
        return None


def refusal(text: str) -> bool:
    return bool(REFUSALS.match(text or ""))


def _json_candidates(text: str):
    for fenced in FENCE.findall(text):
        yield fenced
    yield text
    for open_, close in (("[", "]"), ("{", "}")):
        start, end = text.find(open_), text.rfind(close)
        if 0 <= start < end:
            yield text[start:end + 1]


def load_json(text: str):
    """The first JSON value in a reply: fenced, whole, or the span from the first [ or { to the last ] or }."""
    for candidate in _json_candidates(text):
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            continue
    # one JSON object per line (JSON Lines), as some teachers write lists
    objects = []
    for line in text.splitlines():
        line = line.strip().rstrip(",")
        if line.startswith("{") and line.endswith("}"):
            try:
                objects.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    if objects:
        return objects
    raise ValueError("no JSON")


LABELLED = re.compile(r"(?:^|\n)\s*(?:\d+[.)]\s*)?\**(?:Q|Question)\**\s*\d*\s*[:.]\**\s*(.+?)\s*\n+\s*\**(?:A|Answer)\**"
                      r"\s*\d*\s*[:.]\**\s*(.+?)(?=\n\s*(?:\d+[.)]\s*)?\**(?:Q|Question)\**\s*\d*\s*[:.]|\Z)", re.S | re.I)


def parse_items(text: str, keys: tuple[str, str] = ("question", "answer")) -> list[dict | RowError]:
    """A reply holding pairs -> one dict (keys as given) per pair, or a RowError naming the missing field.

    Reads a JSON list of objects (fenced or not, or one object per line), a single object, or plain
    "Question: ... / Answer: ..." blocks. Raises ReplyError when the reply holds none of those."""
    try:
        data = load_json(text)
    except ValueError:
        found = LABELLED.findall(text or "")
        if found:
            return [{keys[0]: q.strip(), keys[1]: a.strip()} for q, a in found]
        if refusal(text):
            raise ReplyError("reply", f"the teacher refused: {_excerpt(text)}") from None
        if not (text or "").strip():
            raise ReplyError("reply", "empty reply") from None
        raise ReplyError("reply", f"not JSON and no Question:/Answer: blocks: {_excerpt(text)}") from None
    if isinstance(data, dict):
        inner = [v for v in data.values() if isinstance(v, list)]
        data = inner[0] if len(inner) == 1 and not _has_pair(data) else [data]
    if not isinstance(data, list):
        raise ReplyError("reply", f"JSON but not a list of pairs: {_excerpt(text)}")
    items = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            items.append(RowError(f"[{i}]", f"not an object: {_excerpt(json.dumps(item))}"))
            continue
        got = {}
        for key, name in zip(keys, ("question", "answer")):
            value = next((item[a] for a in (key,) + FIELD_ALIASES[name] if isinstance(item.get(a), str)), None)
            got[key] = value
        missing = [k for k, v in got.items() if v is None or not v.strip()]
        items.append(RowError(f"[{i}].{missing[0]}", "missing or empty") if missing else
                     {k: v.strip() for k, v in got.items()})
    return items


def _has_pair(d: dict) -> bool:
    return any(k in d for k in FIELD_ALIASES["question"])


def parse_strings(text: str) -> list[str]:
    """A reply listing questions: a JSON list of strings (or of objects with a question), else one
    question per line ending in '?' (numbering and bullets removed). Raises ReplyError for none."""
    try:
        data = load_json(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list)), [data])
    if isinstance(data, list):
        out = []
        for item in data:
            if isinstance(item, dict):
                item = next((item[a] for a in FIELD_ALIASES["question"] if isinstance(item.get(a), str)), None)
            if isinstance(item, str) and item.strip():
                out.append(item.strip())
        if out:
            return out
    lines = [re.sub(r"^\s*(?:[-*•]|\d+[.)])?\s*(?:(?:Q|Question)\s*\d*\s*[:.])?\s*", "", line).strip()
             for line in (text or "").splitlines()]
    out = [line for line in lines if line.endswith("?") and len(line) > 3]
    if out:
        return out
    if refusal(text):
        raise ReplyError("reply", f"the teacher refused: {_excerpt(text)}")
    raise ReplyError("reply", f"no questions found: {_excerpt(text)}" if (text or "").strip() else "empty reply")


def length_problem(text: str, field: str, low: int, high: int) -> RowError | None:
    n = len(text.strip())
    if n < low:
        return RowError(field, f"too short ({n} characters, min_chars {low})")
    if n > high:
        return RowError(field, f"too long ({n} characters, max_chars {high})")
    return None


def _excerpt(text: str, n: int = 80) -> str:
    text = " ".join((text or "").split())
    return repr(text[:n] + ("..." if len(text) > n else ""))
