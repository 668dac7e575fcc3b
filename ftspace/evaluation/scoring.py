"""Scoring: what is scored (each test row's prompt and reference, the general probe's questions) and how (the
task's metrics, base against tuned, the probe's change), into a scorecard. How one is shown and read back is
ftspace.evaluation.showing."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ftspace.data.messages import last_user_text
from ftspace.errors import DataError
from ftspace.evaluation import metrics

PROBE_PATH = Path(__file__).with_name("general_probe.jsonl")
GENERAL_DROP_WARN = 0.10  # a general score this much lower than the base's (10 points) gets a warning
# ... and so does a run that turned more than this share of the probe's questions from right to wrong, whatever it
# gained elsewhere: a net change hides what was lost. Measured (bench/bench_uploads.py, RESULTS.md section 15): the
# quick demo preset on three 40-row uploads lost 4-10 of the 48 and gained 7-10 others, every net change positive;
# tuned on the bundled general rows alone (the control: nothing new to learn), it lost 4-6. So: more than 6 of 48,
# beyond what tuning with nothing to learn turns.
LOST_WARN = 0.125
ADVICE = ("train fewer steps or epochs, lower the learning rate, lower the LoRA rank, or mix general data back in "
          "(mix_general_data: 0.5)")


def label_of(checkpoint: int | None) -> str:
    return f"checkpoint-{checkpoint}" if checkpoint else "final"


# --- what is scored


def target(example: dict) -> tuple[dict, dict] | None:
    """(prompt, reference) of a canonical row: the first assistant turn that calls a tool, else the last
    assistant turn, with everything before it as the prompt. None for a text row (nothing to answer).

    >>> p, r = target({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]})
    >>> p["messages"], r["text"]
    ([{'role': 'user', 'content': 'Hi'}], 'Hello')
    """
    if "prompt" in example and "answer" in example:  # a GRPO row: the prompt, and the reference its rewards read
        prompt = {"messages": example["prompt"], **({"tools": example["tools"]} if example.get("tools") else {})}
        return prompt, {"text": example["answer"], "calls": [], "row": example}
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


PRIMARY = {"function calling": "exact_arguments", "labels": "accuracy", "free text": "token_f1", "rewards": "reward"}


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


def scorecard(references, answers, losses, probe, probe_answers, rewarded: dict | None = None) -> dict:
    """`rewarded`: a GRPO run's {side: [each reply's rewards]} (ftspace.rewards.score_replies): its task is scored
    by the run's own rewards."""
    task, labels = ("rewards", None) if rewarded else task_of(references)
    card = {"task": task, "primary_metric": PRIMARY[task]}
    if labels:
        card["labels"] = labels
    for side in ("base", "tuned"):
        per = rewarded[side] if rewarded else [scores_of(a, r, task, labels) for a, r in zip(answers[side], references)]
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
    lost = [i for i, (b, t) in enumerate(zip(right["base"], right["tuned"])) if b and not t]
    gained = sum(1 for b, t in zip(right["base"], right["tuned"]) if t and not b)
    card["forgetting"] = {"base": base_general, "tuned": tuned_general, "change": change,
                          "threshold": GENERAL_DROP_WARN, "questions": len(probe), "lost": len(lost),
                          "gained": gained, "lost_threshold": LOST_WARN,
                          "warning": _general_warning(base_general, tuned_general, change, probe, lost, gained,
                                                      probe_answers["tuned"])}
    primary = card["primary_metric"]
    card["task_gain"] = card["tuned"].get(primary, 0) - card["base"].get(primary, 0)
    card["probe"] = [{"question": q["question"], "answers": q["answers"], "base": b, "tuned": t,
                      "base_right": rb, "tuned_right": rt}
                     for q, b, t, rb, rt in zip(probe, probe_answers["base"], probe_answers["tuned"], right["base"],
                                                right["tuned"])]
    return card


def _general_warning(base: float, tuned: float, change: float, probe: list, lost: list[int], gained: int,
                     tuned_answers: list[str]) -> str | None:
    """The scorecard's warning about general answers, or None: a net drop beyond GENERAL_DROP_WARN, or (the net
    change looking fine) more than LOST_WARN of the questions the base had right answered wrong."""
    if change < -GENERAL_DROP_WARN:
        return (f"General answers got worse: {tuned:.0%} right after tuning vs {base:.0%} before ({change:+.0%}). To "
                f"keep more of what the model knew: {ADVICE}.")
    if len(lost) <= LOST_WARN * len(probe):
        return None
    first = lost[0]
    example = f'"{probe[first]["question"]}" → "{" ".join(tuned_answers[first].split())[:60]}"'
    return (f"{len(lost)} of the {len(probe)} general questions the base answered right are answered wrong after "
            f"tuning (e.g. {example}), more than tuning with nothing new to learn turns, while {gained} went the other "
            f"way (net {change:+.0%}): read them in the probe's answers before you publish. To keep more of what the "
            f"model knew: {ADVICE}.")


def per_example(targets, answers, task, labels, rewarded: dict | None = None) -> list[dict]:
    """Prompt, reference, both answers and their primary scores; where tuned got worse first."""
    primary = PRIMARY[task]
    out = []
    for i, ((prompt, ref), base, tuned) in enumerate(zip(targets, answers["base"], answers["tuned"])):
        if rewarded:
            b, t = rewarded["base"][i][primary], rewarded["tuned"][i][primary]
        else:
            b = scores_of(base, ref, task, labels).get(primary)
            t = scores_of(tuned, ref, task, labels).get(primary)
        user = last_user_text(prompt["messages"])
        reference = ref["text"] or "\n".join(json.dumps(c, ensure_ascii=False) for c in ref["calls"])
        out.append({"prompt": user, "reference": reference, "base": base, "tuned": tuned, "base_score": b,
                    "tuned_score": t, "change": (t - b) if b is not None and t is not None else None})
    return sorted(out, key=lambda e: e["change"] if e["change"] is not None else 0.0)
