"""Evaluate a run: the tuned and the base model answer the same held-out test prompts and a general-ability
probe; the scorecard puts them side by side (`ftspace eval`, the Evaluate tab, the model card).

One model is loaded (the base with the run's adapter, or a checkpoint's) and answers every prompt twice,
adapter on and off: greedy, batched, left-padded. Test loss is computed on the reference replies' tokens
(the same response mask training uses). Time on CPU is bounded by a cap on test rows (`max_rows`).

    runs/<id>/evaluations/<final|checkpoint-N>.json    the last scorecard of that adapter
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path

from ftspace.errors import DataError, FtspaceError
from ftspace.evaluation import metrics
from ftspace.runs import Run, write_json_atomic

PROBE_PATH = Path(__file__).with_name("general_probe.jsonl")
DEFAULT_MAX_ROWS = 100  # test rows scored; more are left out (the scorecard says how many)
PROBE_NEW_TOKENS = 48  # a probe answer is a short phrase
GENERAL_DROP_WARN = 0.10  # a general score this much lower than the base's (10 points) gets a warning
ADVICE = ("train fewer steps or epochs, lower the learning rate, lower the LoRA rank, or mix general data back in "
          "(mix_general_data: 0.5)")


class Cancelled(FtspaceError):
    """The evaluation was cancelled; nothing was saved."""


@dataclass
class EvalOptions:
    checkpoint: int | None = None  # a checkpoint's step; None for the run's adapter
    test_dataset: str = ""  # score these rows instead of the run's own test rows
    probe_file: str = ""  # a probe of your own (JSONL: question, answers); empty for the bundled one
    max_rows: int = DEFAULT_MAX_ROWS
    max_new_tokens: int = 128
    batch_size: int = 8


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


def test_rows(run: Run, options: EvalOptions, token: str | None = None) -> tuple[list[dict], str]:
    """(canonical rows, where they came from): `options.test_dataset`, else the run's test split, else its
    validation rows (said so)."""
    from ftspace import limits
    from ftspace.data import load_dataset

    if options.test_dataset.strip():  # on a shared app, at most the rows a run may read
        rows, report = load_dataset(options.test_dataset, token=token, limit=limits.rows_cap())
        return rows, report.source
    from ftspace.engine.prepare import prepared_dir, read_prepared

    info = read_prepared(run) or {}
    for name, label in (("test", info.get("test_source") or "test split"), ("eval", "validation rows (no test split)")):
        path = prepared_dir(run) / f"{name}.jsonl"
        if path.exists() and path.stat().st_size:
            with open(path, encoding="utf-8") as fh:
                return [json.loads(line) for line in fh], label
    raise DataError(f"Run {run.id} has no test rows: train with test_size (e.g. 0.1) or test_dataset, or give a "
                    "test dataset here.")


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


# --- the model


class Evaluator:
    """A base model with an adapter, answering batches of prompts with the adapter on or off."""

    def __init__(self, adapter_dir: Path, base_path: str | None = None):
        from ftspace.chat import ChatModel

        from ftspace.data.tokenize import set_chat_template

        self.chat = ChatModel.from_adapter(adapter_dir, base_path)
        self.tokenizer = self.chat.tokenizer
        set_chat_template(self.tokenizer, "auto")  # the adapter's own template (and our length warning off)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def _render(self, prompt: dict) -> str:
        from ftspace.data.tokenize import fold_tools, render, supports_tools

        if supports_tools(self.tokenizer):
            return render(self.tokenizer, prompt["messages"], prompt.get("tools"), add_generation_prompt=True)
        return render(self.tokenizer, fold_tools(prompt), None, add_generation_prompt=True)

    def answer(self, prompts: list[dict], max_new_tokens: int, base: bool) -> list[str]:
        import torch

        from ftspace.config import GenerationSettings

        tok = self.tokenizer
        side, tok.padding_side = tok.padding_side, "left"
        try:
            enc = tok([self._render(p) for p in prompts], add_special_tokens=False, padding=True,
                      return_tensors="pt").to(self.chat.model.device)
        finally:
            tok.padding_side = side
        kwargs = self.chat.generation_kwargs(GenerationSettings(max_new_tokens=max_new_tokens, temperature=0.0))
        kwargs["pad_token_id"] = tok.pad_token_id
        with torch.inference_mode(), self.chat.adapter_for(base):
            out = self.chat.model.generate(**enc, **kwargs)
        return [tok.decode(row[enc["input_ids"].shape[1]:], skip_special_tokens=True).strip() for row in out]

    def loss(self, example: dict, base: bool, max_length: int) -> tuple[float, int]:
        """(summed loss, token count) over the example's assistant tokens."""
        import torch

        from ftspace.data.tokenize import tokenize_example

        enc = tokenize_example(self.tokenizer, example, True, max_length)
        ids = torch.tensor([enc["input_ids"]], device=self.chat.model.device)
        labels = torch.tensor([[t if m else -100 for t, m in zip(enc["input_ids"], enc["assistant_masks"])]],
                              device=ids.device)
        count = int((labels[0, 1:] != -100).sum())
        if not count:
            return 0.0, 0
        with torch.inference_mode(), self.chat.adapter_for(base):
            logits = self.chat.model(input_ids=ids).logits.float()
        loss = torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100, reduction="sum")
        return float(loss), count


# --- the evaluation


def base_for(adapter: Path, token: str | None) -> str:
    """The local folder of an adapter's base model: one its config names by Hub id (a run trained on Hugging Face
    Jobs) is fetched with the caller's `token` only, never the server's."""
    from ftspace.chat import adapter_base
    from ftspace.models import resolve_model

    base = adapter_base(adapter)
    return base if Path(base).is_dir() else resolve_model(base, progress=lambda *_: None, token=token)



def evaluate(run: Run, options: EvalOptions | None = None, token: str | None = None, progress=None,
             cancel: threading.Event | None = None, save: bool = True) -> dict:
    """The scorecard of a run (see module doc). `progress(done, total, what)` is called as work is done;
    setting `cancel` stops at the next batch (Cancelled)."""
    options = options or EvalOptions()
    progress = progress or (lambda *a: None)
    rows, source = test_rows(run, options, token)
    probe = read_probe(options.probe_file)
    pairs = [(row, t) for row in rows if (t := target(row))]
    if not pairs:
        raise DataError(f"{source}: no test row has an assistant reply to compare against.")
    available = len(pairs)
    pairs = pairs[:options.max_rows]
    adapter = run.checkpoint(options.checkpoint) if options.checkpoint else run.adapter_dir
    if not (adapter / "adapter_config.json").exists():
        raise FtspaceError(f"Run {run.id} has no adapter yet ({run.status()['status']}): wait for it to finish.")
    from ftspace.engine.prepare import read_prepared

    model = Evaluator(adapter, (read_prepared(run) or {}).get("model_path") or base_for(adapter, token))
    max_length = run.config().max_seq_length
    total = 4 * len(pairs) + 2 * len(probe)
    done = 0

    def step(n: int, what: str):
        nonlocal done
        if cancel is not None and cancel.is_set():
            raise Cancelled("evaluation cancelled: nothing was saved.")
        done += n
        progress(done, total, what)

    progress(0, total, "loading")
    answers = {"tuned": [], "base": []}
    for side in ("tuned", "base"):
        for i in range(0, len(pairs), options.batch_size):
            step(0, f"{side} answers")
            batch = [t[0] for _, t in pairs[i:i + options.batch_size]]
            answers[side] += model.answer(batch, options.max_new_tokens, base=side == "base")
            step(len(batch), f"{side} answers")
    losses = {}
    for side in ("tuned", "base"):
        summed = count = 0
        for row, _ in pairs:
            step(0, f"{side} test loss")
            loss, n = model.loss(row, side == "base", max_length)
            summed, count = summed + loss, count + n
            step(1, f"{side} test loss")
        losses[side] = summed / count if count else None
    probe_answers = {}
    for side in ("tuned", "base"):
        probe_answers[side] = []
        for i in range(0, len(probe), options.batch_size):
            step(0, f"{side} probe")
            batch = probe[i:i + options.batch_size]
            probe_answers[side] += model.answer([{"messages": [{"role": "user", "content": q["question"]}]}
                                                 for q in batch], PROBE_NEW_TOKENS, base=side == "base")
            step(len(batch), f"{side} probe")

    card = scorecard([t[1] for _, t in pairs], answers, losses, probe, probe_answers)
    card["examples"] = per_example([t for _, t in pairs], answers, card["task"], card.get("labels"))
    label = label_of(options.checkpoint) if options.checkpoint else (run.status().get("adapter_checkpoint") or "final")
    card.update(run=run.id, checkpoint=label, adapter_step=_step_of(adapter, run),
                test={"source": source, "rows": len(pairs), "rows_available": available,
                      "capped": available > len(pairs), "max_rows": options.max_rows,
                      "max_new_tokens": options.max_new_tokens},
                probe_source=Path(options.probe_file).name if options.probe_file else "bundled general probe")
    if save:
        folder = run.path / "evaluations"
        folder.mkdir(exist_ok=True)
        write_json_atomic(folder / f"{label}.json", card)
    return card


def stream(run: Run, options: EvalOptions, token: str | None = None, save: bool = True,
           cancel: threading.Event | None = None):
    """`evaluate` on a thread of its own, as ("progress", done, total, what) items and finally ("done", card).
    Setting `cancel`, or closing the generator (a cancelled request, a closed page), cancels the evaluation."""
    import queue

    updates: queue.Queue = queue.Queue()
    cancel = cancel or threading.Event()

    def work():
        try:
            card = evaluate(run, options, token, lambda *p: updates.put(("progress", *p)), cancel, save)
            updates.put(("done", card))
        except BaseException as e:  # handed to the reader
            updates.put(("error", e))

    threading.Thread(target=work, daemon=True, name="ftspace-eval").start()
    try:
        while True:
            item = updates.get()
            if item[0] == "error":
                raise item[1]
            yield item
            if item[0] == "done":
                return
    finally:
        cancel.set()


def _step_of(adapter: Path, run: Run):
    chosen = adapter.name if adapter.name.startswith("checkpoint-") else run.status().get("adapter_checkpoint")
    return int(chosen.split("-")[1]) if chosen else run.status().get("step")


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
