"""Scores for one generated answer against its reference, and their averages.

Free text: exact match and token F1 as the SQuAD v1.1 evaluation script defines them (lower case, no
punctuation, no articles, whitespace collapsed), and ROUGE-L F-measure from Google's `rouge-score`
(the reimplementation of ROUGE-1.5.5 that `evaluate`'s rouge metric wraps). `evaluate` itself is not
used: `evaluate.load("squad")` fetches the metric's script from the Hub when called, which an offline
machine or a locked-down Space cannot do, and the SQuAD definitions are ten lines. Labels: accuracy,
when the references come from a small set. Function calls: valid JSON, right function, exact arguments.

>>> exact_match("The Paris.", "paris")
1.0
>>> round(token_f1("the capital is Paris", "Paris is the capital of France"), 3)
0.75
"""

from __future__ import annotations

import collections
import functools
import json
import re
import string

from ftspace.data.messages import tool_call_tags

MAX_LABELS = 10  # at most this many distinct references, each short, reads as classification


def normalize(text: str) -> str:
    """SQuAD's normalization: lower case, punctuation and articles removed, whitespace collapsed."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize(prediction) == normalize(reference))


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall over normalized tokens (SQuAD's F1).

    >>> token_f1("", ""), token_f1("a", "b c")
    (1.0, 0.0)
    """
    pred, ref = normalize(prediction).split(), normalize(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = collections.Counter(pred) & collections.Counter(ref)
    same = sum(common.values())
    if not same:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


@functools.cache
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (longest common subsequence of tokens), from `rouge-score`.

    >>> rouge_l("the cat sat", "the cat sat")
    1.0
    """
    return _rouge().score(reference, prediction)["rougeL"].fmeasure


def label_set(references: list[str]) -> list[str] | None:
    """The labels, when the references are a small set of short answers (classification), else None.

    >>> label_set(["positive", "negative", "positive", "Negative"])
    ['negative', 'positive']
    >>> label_set(["Paris is the capital.", "Rome."]) is None
    True
    """
    labels = {normalize(r) for r in references}
    if len(references) < 2 or len(labels) > MAX_LABELS or len(labels) >= len(references):
        return None
    if any(not label or len(label.split()) > 3 for label in labels):
        return None
    return sorted(labels)


def label_accuracy(prediction: str, reference: str, labels: list[str]) -> float:
    """1 when the answer names the reference label and no other (a label answered in a sentence counts).

    >>> label_accuracy("Positive.", "positive", ["negative", "positive"])
    1.0
    >>> label_accuracy("positive or negative", "positive", ["negative", "positive"])
    0.0
    """
    said = normalize(prediction)
    named = [label for label in labels if re.search(rf"\b{re.escape(label)}\b", said)]
    return float(named == [normalize(reference)])


def tool_call_scores(calls: list[dict] | None, reference: list[dict]) -> dict:
    """Function-calling scores of one reply: `calls` parsed from it (None: it held a call that is not valid
    JSON), `reference` the expected [{"name", "arguments"}] in order.

    >>> tool_call_scores([{"name": "f", "arguments": {"x": 1}}], [{"name": "f", "arguments": {"x": 1}}])
    {'valid_json': 1.0, 'right_function': 1.0, 'exact_arguments': 1.0}
    >>> tool_call_scores([{"name": "f", "arguments": {"x": 2}}], [{"name": "f", "arguments": {"x": 1}}])
    {'valid_json': 1.0, 'right_function': 1.0, 'exact_arguments': 0.0}
    >>> tool_call_scores([], [{"name": "f", "arguments": {}}])
    {'valid_json': 0.0, 'right_function': 0.0, 'exact_arguments': 0.0}
    """
    if not calls:
        return {"valid_json": 0.0, "right_function": 0.0, "exact_arguments": 0.0}
    names = [c.get("name") for c in calls]
    right = names == [r["name"] for r in reference]
    same_args = right and all(_arguments(c) == _arguments(r) for c, r in zip(calls, reference))
    return {"valid_json": 1.0, "right_function": float(right), "exact_arguments": float(same_args)}


def _arguments(call: dict):
    args = call.get("arguments", {})
    if isinstance(args, str):  # some exports keep arguments as a JSON string
        try:
            return json.loads(args)
        except json.JSONDecodeError:
            return args
    return args


def parse_calls(text: str) -> list[dict] | None:
    """The <tool_call>{json}</tool_call> calls in a reply: [] for none, None when one is not valid JSON.

    >>> parse_calls('<tool_call>{"name": "f", "arguments": {}}</tool_call>')
    [{'name': 'f', 'arguments': {}}]
    >>> parse_calls('<tool_call>{"name": "f", </tool_call>') is None
    True
    """
    calls = tool_call_tags(text)
    return None if None in calls else calls


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def contains_answer(reply: str, answers: list[str]) -> float:
    """A probe question is answered right when the reply contains one of its answers as whole words.

    >>> contains_answer("The capital of France is Paris.", ["paris"]), contains_answer("It has 18 legs", ["8"])
    (1.0, 0.0)
    """
    said = " ".join(reply.lower().replace(",", " , ").split())
    for answer in answers:
        pattern = r"(?<![\w])" + re.escape(" ".join(answer.lower().replace(",", " , ").split())) + r"(?![\w])"
        if re.search(pattern, said):
            return 1.0
    return 0.0
