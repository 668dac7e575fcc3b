"""A scorecard: what is scored (each test row's prompt and reference, the general probe's questions), how it is
scored (the task's metrics, base against tuned, the probe's change), and how it is shown and read back (the table
and summary of the CLI, the app and the model card; the trade-off over checkpoints).

    runs/<id>/evaluations/<final|checkpoint-N>.json    the last scorecard of that adapter
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ftspace.errors import DataError
from ftspace.evaluation import metrics
from ftspace.runs import Run

PROBE_PATH = Path(__file__).with_name("general_probe.jsonl")
GENERAL_DROP_WARN = 0.10  # a general score this much lower than the base's (10 points) gets a warning
ADVICE = ("train fewer steps or epochs, lower the learning rate, lower the LoRA rank, or mix general data back in "
          "(mix_general_data: 0.5)")


def label_of(checkpoint: int | None) -> str:
    return f"checkpoint-{checkpoint}" if checkpoint else "final"


def saved(run: Run) -> dict[str, dict]:
    """The run's saved scorecards by label ('final', 'checkpoint-20', ...)."""
    out = {}
    for path in sorted((run.path / "evaluations").glob("*.json")):
        try:
            out[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return out


# --- what is scored


def target(example: dict) -> tuple[dict, dict] | None:
    """(prompt, reference) of a canonical row: the first assistant turn that calls a tool, else the last
    assistant turn, with everything before it as the prompt. None for a text row (nothing to answer).

    >>> p, r = target({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]})
    >>> p["messages"], r["text"]
    ([{'role': 'user', 'content': 'Hi'}], 'Hello')
    """
    messages = example.get("messages")
    if not messages:
        return None
    replies = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    if not replies:
        return None
    calling = [i for i in replies if messages[i].get("tool_calls")]
    at = calling[0] if calling else replies[-1]
    reply = messages[at]
    calls = [{"name": c["function"]["name"], "arguments": c["function"].get("arguments", {})}
             for c in reply.get("tool_calls") or []]
    prompt = {"messages": messages[:at], **({"tools": example["tools"]} if example.get("tools") else {})}
    return prompt, {"text": reply.get("content") or "", "calls": calls}


def read_probe(path: str | Path = "") -> list[dict]:
    """The probe's questions: JSONL rows with `question` and `answers` (a list, or `answer`: one string)."""
    path = Path(path) if path else PROBE_PATH
    items = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path.name}: cannot read the probe file ({e}).") from None
    for row_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path.name}: row {row_no}: not valid JSON ({e.msg}): one object per line.") from None
        answers = row.get("answers", [row["answer"]] if "answer" in row else None) if isinstance(row, dict) else None
        if not isinstance(answers, list) or not answers or not str(row.get("question", "")).strip():
            raise DataError(f"{path.name}: row {row_no}: question/answers: each row needs a question and a list "
                            'of accepted answers, e.g. {"question": "2 + 2?", "answers": ["4", "four"]}.')
        items.append({"question": row["question"], "answers": [str(a) for a in answers],
                      "kind": row.get("kind", "")})
    if not items:
        raise DataError(f"{path.name}: the probe file has no questions.")
    return items


# --- scoring


def task_of(references: list[dict]) -> tuple[str, list[str] | None]:
    """'function calling', 'labels' (with the label set) or 'free text'."""
    if any(r["calls"] for r in references):
        return "function calling", None
    labels = metrics.label_set([r["text"] for r in references])
    return ("labels", labels) if labels else ("free text", None)


PRIMARY = {"function calling": "exact_arguments", "labels": "accuracy", "free text": "token_f1"}


def scores_of(prediction: str, reference: dict, task: str, labels) -> dict:
    if task == "function calling":
        if reference["calls"]:
            return metrics.tool_call_scores(metrics.parse_calls(prediction), reference["calls"])
        return {}  # a plain reply in a function-calling set: not a call to score
    out = {"exact_match": metrics.exact_match(prediction, reference["text"]),
           "token_f1": metrics.token_f1(prediction, reference["text"]),
           "rouge_l": metrics.rouge_l(prediction, reference["text"])}
    if task == "labels":
        out["accuracy"] = metrics.label_accuracy(prediction, reference["text"], labels)
    return out


def scorecard(references, answers, losses, probe, probe_answers) -> dict:
    task, labels = task_of(references)
    card = {"task": task, "primary_metric": PRIMARY[task]}
    if labels:
        card["labels"] = labels
    for side in ("base", "tuned"):
        per = [scores_of(a, r, task, labels) for a, r in zip(answers[side], references)]
        names = sorted({k for p in per for k in p})
        side_card = {name: metrics.mean([p[name] for p in per if name in p]) for name in names}
        if losses.get(side) is not None:
            side_card["test_loss"] = losses[side]
            side_card["perplexity"] = math.exp(min(losses[side], 50))
        card[side] = side_card
    right = {side: [metrics.contains_answer(a, q["answers"]) for a, q in zip(probe_answers[side], probe)]
             for side in ("base", "tuned")}
    base_general, tuned_general = metrics.mean(right["base"]), metrics.mean(right["tuned"])
    change = tuned_general - base_general
    card["forgetting"] = {"base": base_general, "tuned": tuned_general, "change": change,
                          "threshold": GENERAL_DROP_WARN, "questions": len(probe),
                          "warning": (f"General answers got worse: {tuned_general:.0%} right after tuning vs "
                                      f"{base_general:.0%} before ({change:+.0%}). To keep more of what the model "
                                      f"knew: {ADVICE}.") if change < -GENERAL_DROP_WARN else None}
    primary = card["primary_metric"]
    card["task_gain"] = card["tuned"].get(primary, 0) - card["base"].get(primary, 0)
    card["probe"] = [{"question": q["question"], "answers": q["answers"], "base": b, "tuned": t,
                      "base_right": rb, "tuned_right": rt}
                     for q, b, t, rb, rt in zip(probe, probe_answers["base"], probe_answers["tuned"], right["base"],
                                                right["tuned"])]
    return card


def per_example(targets, answers, task, labels) -> list[dict]:
    """Prompt, reference, both answers and their primary scores; where tuned got worse first."""
    primary = PRIMARY[task]
    out = []
    for (prompt, ref), base, tuned in zip(targets, answers["base"], answers["tuned"]):
        b = scores_of(base, ref, task, labels).get(primary)
        t = scores_of(tuned, ref, task, labels).get(primary)
        user = next((m["content"] for m in reversed(prompt["messages"]) if m["role"] == "user"), "")
        reference = ref["text"] or "\n".join(json.dumps(c, ensure_ascii=False) for c in ref["calls"])
        out.append({"prompt": user, "reference": reference, "base": base, "tuned": tuned, "base_score": b,
                    "tuned_score": t, "change": (t - b) if b is not None and t is not None else None})
    return sorted(out, key=lambda e: e["change"] if e["change"] is not None else 0.0)


# --- reading a scorecard


METRIC_NAMES = {"test_loss": "test loss", "perplexity": "perplexity", "exact_match": "exact match",
                "token_f1": "token F1", "rouge_l": "ROUGE-L", "accuracy": "accuracy", "valid_json": "valid JSON",
                "right_function": "right function", "exact_arguments": "exact arguments"}
LOWER_IS_BETTER = ("test_loss", "perplexity")


def table_rows(card: dict) -> list[list]:
    """[metric, base, tuned, change] rows, then the general probe."""
    rows = []
    for key, name in METRIC_NAMES.items():
        if key in card["base"] or key in card["tuned"]:
            b, t = card["base"].get(key), card["tuned"].get(key)
            rows.append([name, _fmt(b), _fmt(t), _fmt(t - b if b is not None and t is not None else None, sign=True)])
    f = card["forgetting"]
    rows.append([f"general probe ({f['questions']} questions)", _fmt(f["base"]), _fmt(f["tuned"]),
                 _fmt(f["change"], sign=True)])
    return rows


def summary(card: dict, with_table: bool = True) -> str:
    """The scorecard in a few lines of Markdown (CLI, app, model card); the app shows the table itself."""
    f = card["forgetting"]
    primary = METRIC_NAMES[card["primary_metric"]]
    test = card["test"]
    capped = f" (first {test['rows']} of {test['rows_available']})" if test["capped"] else ""
    lines = [f"Scored on {test['rows']} test prompts{capped} from {test['source']}, {card['task']}; adapter: "
             f"{card['checkpoint']}.",
             f"**Task gain** ({primary}): {_fmt(card['task_gain'], sign=True)}  ·  **general change** "
             f"({f['questions']}-question probe): {_fmt(f['change'], sign=True)} "
             f"({_fmt(f['base'])} → {_fmt(f['tuned'])})"]
    if f["warning"]:
        lines.append(f"⚠️ {f['warning']}")
    if not with_table:
        return "\n\n".join(lines)
    table = ["| metric | base | tuned | change |", "| --- | --- | --- | --- |"]
    table += [f"| {' | '.join(str(c) for c in row)} |" for row in table_rows(card)]
    return "\n\n".join(lines) + "\n\n" + "\n".join(table)


TRADEOFF_COLUMNS = ["adapter", "step", "task metric", "base", "tuned", "general (tuned)", "general change"]


def tradeoff(run: Run) -> list[list]:
    """One row per scored adapter of the run (checkpoints and final), by step: the task score next to the
    general probe's, so the checkpoint to chat with and publish can be picked."""
    rows = []
    for label, card in saved(run).items():
        primary = card["primary_metric"]
        rows.append([label, card.get("adapter_step"), METRIC_NAMES[primary], _fmt(card["base"].get(primary)),
                     _fmt(card["tuned"].get(primary)), _fmt(card["forgetting"]["tuned"]),
                     _fmt(card["forgetting"]["change"], sign=True)])
    return sorted(rows, key=lambda r: (r[1] is None, r[1] or 0))


def _fmt(value, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.3f}" if sign else f"{value:.3f}"
