"""Running the models for a scorecard: one model is loaded (the base with the run's adapter, or a checkpoint's) and
answers every prompt twice, adapter on and off: greedy, batched, left-padded. Test loss is computed on the reference
replies' tokens (the same response mask training uses). Time on CPU is bounded by a cap on test rows (`max_rows`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from dataclasses import dataclass
from pathlib import Path

from ftspace.config import SHORT_REPLY_TOKENS
from ftspace.env import cache_dir
from ftspace.errors import DataError, FtspaceError
from ftspace.evaluation.scoring import label_of, per_example, read_probe, scorecard, target
from ftspace.runs import Run, write_json_atomic

DEFAULT_MAX_ROWS = 100  # test rows scored; more are left out (the scorecard says how many)
PROBE_NEW_TOKENS = 48  # a probe answer is a short phrase
# The probe's questions are short and alike: answered 24 at a time (on 2 CPU cores the bundled model's 48 answers take
# 23 s where batches of 8 took 36 s, the answers the same; two progress updates per side, where one batch of 48
# gave 20 s and none).
PROBE_BATCH = 24


class Cancelled(FtspaceError):
    """The evaluation was cancelled; nothing was saved."""


@dataclass
class EvalOptions:
    checkpoint: int | None = None  # a checkpoint's step; None for the run's adapter
    test_dataset: str = ""  # score these rows instead of the run's own test rows
    probe_file: str = ""  # a probe of your own (JSONL: question, answers); empty for the bundled one
    max_rows: int = DEFAULT_MAX_ROWS
    max_new_tokens: int = SHORT_REPLY_TOKENS
    batch_size: int = 8


def test_rows(run: Run, options: EvalOptions, token: str | None = None) -> tuple[list[dict], str]:
    """(canonical rows, where they came from): `options.test_dataset`, else the run's test split, else its
    validation rows (said so)."""
    from ftspace import limits
    from ftspace.data import load_dataset

    if options.test_dataset.strip():  # on a shared app, at most the rows a run may read
        method = "grpo" if run.config().method == "grpo" else "sft"  # a GRPO run's test rows: prompts (with answers)
        rows, report = load_dataset(options.test_dataset, token=token, limit=limits.rows_cap(), method=method)
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


# --- the model


class Evaluator:
    """A base model with an adapter, answering batches of prompts with the adapter on or off."""

    def __init__(self, adapter_dir: Path, base_path: str | None = None):
        from ftspace.chat import ChatModel

        from ftspace.data.tokenize import set_chat_template

        self.chat = ChatModel.from_adapter(adapter_dir, base_path)
        self.tokenizer = self.chat.tokenizer
        set_chat_template(self.tokenizer, "auto")  # the adapter's own template (and our length warning off)

    def _render(self, prompt: dict) -> str:
        from ftspace.data.tokenize import fold_tools, render, supports_tools

        if supports_tools(self.tokenizer):
            return render(self.tokenizer, prompt["messages"], prompt.get("tools"), add_generation_prompt=True)
        return render(self.tokenizer, fold_tools(prompt), None, add_generation_prompt=True)

    def answer(self, prompts: list[dict], max_new_tokens: int, base: bool) -> list[str]:
        from ftspace.config import GenerationSettings

        return self.chat.complete_texts([self._render(p) for p in prompts],
                                        GenerationSettings(max_new_tokens=max_new_tokens, temperature=0.0), base)

    def loss(self, example: dict, base: bool, max_length: int) -> tuple[float, int]:
        """(summed loss, token count) over the example's assistant tokens."""
        import torch

        from ftspace.chat import on_compute_thread
        from ftspace.data.tokenize import tokenize_example

        enc = tokenize_example(self.tokenizer, example, True, max_length)
        ids = torch.tensor([enc["input_ids"]], device=self.chat.model.device)
        labels = torch.tensor([[t if m else -100 for t, m in zip(enc["input_ids"], enc["assistant_masks"])]],
                              device=ids.device)
        count = int((labels[0, 1:] != -100).sum())
        if not count:
            return 0.0, 0
        def work():
            with torch.inference_mode(), self.chat.adapter_for(base):
                logits = self.chat.model(input_ids=ids).logits.float()
            return torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100,
                                                     reduction="sum")
        return float(on_compute_thread(work)), count


# --- the evaluation


def base_for(adapter: Path, token: str | None) -> str:
    """The local folder of an adapter's base model: one its config names by Hub id (a run trained on Hugging Face
    Jobs) is fetched with the caller's `token` only, never the server's."""
    from ftspace.chat import adapter_base
    from ftspace.models import resolve_model

    base = adapter_base(adapter)
    return base if Path(base).is_dir() else resolve_model(base, progress=lambda *_: None, token=token)



def preflight(run: Run, options: EvalOptions, token: str | None = None) -> tuple[list, str, Path]:
    """What an evaluation needs that no model does, or the one-line error saying what is missing: (test rows paired
    with the replies to compare against, where they came from, the adapter folder). ZeroGPU runs it on the CPU
    before asking for a GPU."""
    rows, source = test_rows(run, options, token)
    pairs = [(row, t) for row in rows if (t := target(row))]
    if not pairs:
        raise DataError(f"{source}: no test row has an assistant reply to compare against.")
    return pairs, source, adapter_of(run, options.checkpoint)


def adapter_of(run: Run, checkpoint: int | None = None) -> Path:
    """The adapter folder scored: a checkpoint's, else the one the run chats and publishes with; one line when the
    run has none yet."""
    adapter = run.checkpoint(checkpoint) if checkpoint else run.adapter_dir
    if not (adapter / "adapter_config.json").exists():
        raise FtspaceError(f"Run {run.id} has no adapter yet ({run.status()['status']}): wait for it to finish.")
    return adapter


def evaluate(run: Run, options: EvalOptions | None = None, token: str | None = None, progress=None,
             cancel: threading.Event | None = None, save: bool = True, checked: tuple | None = None,
             kept_base: dict | None = None) -> dict:
    """The scorecard of a run (see module doc). `progress(done, total, what)` is called as work is done;
    setting `cancel` stops at the next batch (Cancelled). `checked`: what `preflight` returned, when the caller
    ran it already (ZeroGPU, on the CPU: the test rows are not read again inside the GPU call). `kept_base`: a dict
    shared by the evaluations of one comparison: the base's test answers and loss, reused by the next evaluation
    whose base, template, rows and lengths are the same (`compare`)."""
    options = options or EvalOptions()
    progress = progress or (lambda *a: None)
    pairs, source, adapter = checked or preflight(run, options, token)
    probe = read_probe(options.probe_file)
    available = len(pairs)
    pairs = pairs[:options.max_rows]
    from ftspace.engine.prepare import read_prepared

    base_path = (read_prepared(run) or {}).get("model_path") or base_for(adapter, token)
    model = Evaluator(adapter, base_path)
    cfg = run.config()
    max_length = cfg.max_seq_length
    grpo = cfg.method == "grpo"  # scored by its rewards; its references are answers, not replies to take a loss on
    new_tokens = cfg.max_completion_length if grpo else options.max_new_tokens
    total = (2 if grpo else 4) * len(pairs) + 2 * len(probe)
    done = 0

    def step(n: int, what: str):
        nonlocal done
        if cancel is not None and cancel.is_set():
            raise Cancelled("evaluation cancelled: nothing was saved.")
        done += n
        progress(done, total, what)

    progress(0, total, "loading")
    answers = {"tuned": [], "base": []}
    losses = {}
    same = json.dumps([str(base_path), model.tokenizer.chat_template, [t for _, t in pairs], new_tokens, max_length,
                       options.batch_size, grpo], default=str)
    kept_base = {} if kept_base is None else kept_base
    reused = kept_base.get("same") == same  # the other side of a comparison answered these already
    if reused:
        answers["base"] = kept_base["answers"]
        if "loss" in kept_base:
            losses["base"] = kept_base["loss"]
        step((1 if grpo else 2) * len(pairs), "base answers (the same base as the other run's)")
    sides = ("tuned",) if reused else ("tuned", "base")
    for side in sides:
        for i in range(0, len(pairs), options.batch_size):
            step(0, f"{side} answers")
            batch = [t[0] for _, t in pairs[i:i + options.batch_size]]
            answers[side] += model.answer(batch, new_tokens, base=side == "base")
            step(len(batch), f"{side} answers")
    for side in () if grpo else sides:
        summed = count = 0
        for row, _ in pairs:
            step(0, f"{side} test loss")
            loss, n = model.loss(row, side == "base", max_length)
            summed, count = summed + loss, count + n
            step(1, f"{side} test loss")
        losses[side] = summed / count if count else None
    kept_base.update(same=same, answers=answers["base"], **({"loss": losses["base"]} if "base" in losses else {}))
    probe_answers = {}
    # The base's answers to the probe depend on nothing the run trained: kept per base model, template, precision
    # and probe, so the next evaluation of a run (or checkpoint) on the same base skips them.
    kept = base_answers_file(model, base_path, probe, PROBE_BATCH)
    for side in ("tuned", "base"):
        if side == "base" and (known := _read_kept(kept, len(probe))) is not None:
            probe_answers[side] = known
            step(len(probe), "base probe (kept from an earlier evaluation)")
            continue
        probe_answers[side] = []
        for i in range(0, len(probe), PROBE_BATCH):
            step(0, f"{side} probe")
            batch = probe[i:i + PROBE_BATCH]
            probe_answers[side] += model.answer([{"messages": [{"role": "user", "content": q["question"]}]}
                                                 for q in batch], PROBE_NEW_TOKENS, base=side == "base")
            step(len(batch), f"{side} probe")
    _keep(kept, probe_answers["base"])

    rewarded = None
    if grpo:
        from ftspace.rewards import score_replies

        rewarded = {side: score_replies(cfg, answers[side], [row for row, _ in pairs]) for side in ("base", "tuned")}
    card = scorecard([t[1] for _, t in pairs], answers, losses, probe, probe_answers, rewarded)
    card["examples"] = per_example([t for _, t in pairs], answers, card["task"], card.get("labels"), rewarded)
    if grpo:
        card["rewards"] = list(cfg.rewards)
    label = label_of(options.checkpoint) if options.checkpoint else (run.status().get("adapter_checkpoint") or "final")
    card.update(run=run.id, checkpoint=label, adapter_step=_step_of(adapter, run),
                test={"source": source, "rows": len(pairs), "rows_available": available,
                      "capped": available > len(pairs), "max_rows": options.max_rows,
                      "max_new_tokens": new_tokens},
                probe_source=Path(options.probe_file).name if options.probe_file else "bundled general probe")
    if save:
        folder = run.path / "evaluations"
        folder.mkdir(exist_ok=True)
        write_json_atomic(folder / f"{label}.json", card)
    return card


def compare_preflight(run: Run, other: Run, options: EvalOptions, token: str | None = None) -> tuple:
    """What a comparison needs that no model does, or the one-line error: `preflight`'s (test rows, their source,
    `run`'s adapter) and `other`'s adapter. ZeroGPU runs it on the CPU before asking for a GPU."""
    if other.path.resolve() == run.path.resolve():
        raise DataError(f"{other.id}: that is the run itself: pick another run to compare it with.")
    if (run.config().method == "grpo") != (other.config().method == "grpo"):
        raise DataError(f"Run {run.id} is {run.config().method} and {other.id} is {other.config().method}: a GRPO run "
                        "is scored by its rewards, another by its replies; compare runs of the same kind.")
    other_adapter = adapter_of(other)  # the adapter it chats and publishes with
    return *preflight(run, options, token), other_adapter


def compare(run: Run, other: Run, options: EvalOptions | None = None, token: str | None = None, progress=None,
            cancel: threading.Event | None = None, checked: tuple | None = None) -> dict:
    """Two runs scored on the same test rows (`run`'s own, or options.test_dataset) and the same probe, each next to
    its base: {"run": scorecard, "against": scorecard}. `run`'s scorecard is saved as its evaluation (it is one);
    `other`'s, made on rows that are not its own, is not. Runs of different methods are not compared (a GRPO run is
    scored by its rewards, another by its replies). Where both runs have the same base (and template), its answers
    are computed once. `checked`: what `compare_preflight` returned, when the caller ran it already."""
    options = options or EvalOptions()
    progress = progress or (lambda *a: None)
    pairs, source, adapter, other_adapter = checked or compare_preflight(run, other, options, token)
    kept_base: dict = {}
    first = evaluate(run, options, token, lambda done, total, what: progress(done, 2 * total, f"{run.id}: {what}"),
                     cancel, save=True, checked=(pairs, source, adapter), kept_base=kept_base)
    second = evaluate(other, dataclasses.replace(options, checkpoint=None), token,
                      lambda done, total, what: progress(total + done, 2 * total, f"{other.id}: {what}"), cancel,
                      save=False, checked=(pairs, source, other_adapter), kept_base=kept_base)
    return {"run": first, "against": second}


def base_answers_file(model: Evaluator, base_path: str, probe: list[dict], batch_size: int) -> Path:
    """Where the base model's answers to this probe are kept (ftspace's cache): named by everything they depend on,
    the base's weights (path, sizes, times), the chat template the run renders prompts with, its special tokens, the
    precision, the library versions, the answer length, the batch size and the questions."""
    import hashlib

    import torch
    import transformers

    weights = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in Path(base_path).glob("*")
                     if p.suffix in (".safetensors", ".bin", ".gguf"))
    tok = model.tokenizer
    key = json.dumps([str(Path(base_path).resolve()), weights, tok.chat_template, tok.eos_token_id, tok.pad_token_id,
                      str(model.chat.model.dtype), torch.__version__, transformers.__version__, PROBE_NEW_TOKENS,
                      batch_size, [q["question"] for q in probe]], default=str)
    return cache_dir() / "base-probe" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def _read_kept(path: Path, count: int) -> list[str] | None:
    try:
        answers = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return answers if isinstance(answers, list) and len(answers) == count else None


def _keep(path: Path, answers: list[str]) -> None:
    with contextlib.suppress(OSError):  # a cache: a read-only or full disk only costs the next evaluation time
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, answers)


def stream(run: Run, options: EvalOptions, token: str | None = None, save: bool = True,
           cancel: threading.Event | None = None, checked: tuple | None = None, against: Run | None = None):
    """`evaluate` (or, `against` another run, `compare`) on a thread of its own, as ("progress", done, total, what)
    items and finally ("done", card or pair). Setting `cancel`, or closing the generator (a cancelled request, a
    closed page), cancels the evaluation."""
    import queue

    updates: queue.Queue = queue.Queue()
    cancel = cancel or threading.Event()

    def work():
        try:
            report = lambda *p: updates.put(("progress", *p))  # noqa: E731
            card = (compare(run, against, options, token, report, cancel, checked) if against is not None else
                    evaluate(run, options, token, report, cancel, save, checked))
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
