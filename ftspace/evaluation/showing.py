"""Showing a scorecard and reading saved ones back: the table and summary of the CLI, the app and the model card, and
the trade-off over a run's checkpoints.

    runs/<id>/evaluations/<final|checkpoint-N>.json    the last scorecard of that adapter
"""

from __future__ import annotations

import json

from ftspace.runs import Run


def saved(run: Run) -> dict[str, dict]:
    """The run's saved scorecards by label ('final', 'checkpoint-20', ...)."""
    out = {}
    for path in sorted((run.path / "evaluations").glob("*.json")):
        try:
            out[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return out


METRIC_NAMES = {"test_loss": "test loss", "perplexity": "perplexity", "exact_match": "exact match",
                "token_f1": "token F1", "rouge_l": "ROUGE-L", "accuracy": "accuracy", "valid_json": "valid JSON",
                "right_function": "right function", "exact_arguments": "exact arguments",
                "reward": "mean reward (weighted)"}
LOWER_IS_BETTER = ("test_loss", "perplexity")


def table_rows(card: dict) -> list[list]:
    """[metric, base, tuned, change] rows, then the general probe."""
    rows = []
    for key, name in METRIC_NAMES.items():
        if key in card["base"] or key in card["tuned"]:
            b, t = card["base"].get(key), card["tuned"].get(key)
            rows.append([name, _fmt(b), _fmt(t), _fmt(t - b if b is not None and t is not None else None, sign=True)])
    for key in sorted(k for k in card["base"] if k.startswith("reward_")):  # a GRPO run: each of its rewards
        b, t = card["base"][key], card["tuned"].get(key)
        rows.append([f"reward: {key[7:]}", _fmt(b), _fmt(t), _fmt(t - b if t is not None else None, sign=True)])
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
             f"({_fmt(f['base'])} → {_fmt(f['tuned'])}"
             + (f"; {f['lost']} answers lost, {f['gained']} gained)" if "lost" in f else ")")]
    if f["warning"]:
        lines.append(f"⚠️ {f['warning']}")
    if not with_table:
        return "\n\n".join(lines)
    table = ["| metric | base | tuned | change |", "| --- | --- | --- | --- |"]
    table += [f"| {' | '.join(str(c) for c in row)} |" for row in table_rows(card)]
    return "\n\n".join(lines) + "\n\n" + "\n".join(table)


def comparison(pair: dict) -> str:
    """Two runs' scorecards on the same rows (evaluation.compare) as Markdown: each metric for the base, the run and
    the other run, and the other's difference; a base of each when their bases differ; where their answers differ."""
    a, b = pair["run"], pair["against"]
    name_a, name_b = a["run"], b["run"]
    same_base = a["base"] == b["base"] and a["forgetting"]["base"] == b["forgetting"]["base"]
    head = (["metric", "base", name_a, name_b, f"{name_b} − {name_a}"] if same_base else
            ["metric", f"{name_a}'s base", name_a, f"{name_b}'s base", name_b, f"{name_b} − {name_a}"])
    keys = [k for k in METRIC_NAMES if k in a["tuned"] and k in b["tuned"]]
    keys += sorted(k for k in a["tuned"] if k.startswith("reward_") and k in b["tuned"])
    scores = [(METRIC_NAMES.get(k) or f"reward: {k[7:]}", a["base"].get(k), a["tuned"].get(k), b["base"].get(k),
               b["tuned"].get(k)) for k in keys]
    fa, fb = a["forgetting"], b["forgetting"]
    scores.append((f"general probe ({fa['questions']} questions)", fa["base"], fa["tuned"], fb["base"], fb["tuned"]))
    rows = []
    for name, ba, va, bb, vb in scores:
        diff = _fmt(vb - va if va is not None and vb is not None else None, sign=True)
        rows.append([name, _fmt(ba), _fmt(va), _fmt(vb), diff] if same_base else
                    [name, _fmt(ba), _fmt(va), _fmt(bb), _fmt(vb), diff])
    test = a["test"]
    lines = [f"{name_a} ({a['checkpoint']}) against {name_b} ({b['checkpoint']}): the same {test['rows']} test prompts "
             f"from {test['source']} ({a['task']}) and the same {a['forgetting']['questions']}-question general probe"
             + ("" if same_base else "; their base models answer differently, so each is shown") + ".",
             "| " + " | ".join(head) + " |\n| " + " | ".join("---" for _ in head) + " |\n"
             + "\n".join("| " + " | ".join(r) + " |" for r in rows)]
    theirs: dict[tuple, list] = {}  # each card lists its examples worst first: paired again by prompt and reference
    for e in b["examples"]:
        theirs.setdefault((e["prompt"], e["reference"]), []).append(e)
    pairs = [(e, theirs[(e["prompt"], e["reference"])].pop(0)) for e in a["examples"]]
    differ = [(ea, eb) for ea, eb in pairs if ea["tuned"] != eb["tuned"]]
    lines.append(f"Their answers differ on {len(differ)} of {len(a['examples'])} test prompts"
                 + (":" if differ else "."))
    for ea, eb in differ[:5]:
        lines.append(f"- {_one_line(ea['prompt'])}\n  - {name_a}: {_one_line(ea['tuned'])}\n  - {name_b}: "
                     f"{_one_line(eb['tuned'])}")
    return "\n\n".join(lines)


def _one_line(text, n: int = 100) -> str:
    return " ".join(str(text).split())[:n]


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
