"""Many question/answer pairs from a few: the teacher writes new pairs in the seeds' style, then filters.

Steps, each visible in the report: generate (a request shows the teacher up to 6 seeds, the task and an
excerpt of the context documents), parse (bad JSON, missing fields and refusals drop per reply or item),
filter (too short / long, exact and near repeats of each other and of the seeds, repeats of evaluation
rows), judge (optional: the teacher says whether each answer answers its question).
"""

from __future__ import annotations

import json
import math
import random

from ftspace.data import formats, load_dataset
from ftspace.data.create import CreateReport
from ftspace.data.create import filters as F
from ftspace.data.create.settings import SYNTH_FIELDS, CreateSettings
from ftspace.data.create.teacher import Teacher, TeacherError
from ftspace.errors import DataError

SYSTEM = "You write training data for fine-tuning a language model. You reply with JSON only."
MAX_SEEDS_SHOWN = 6  # seeds per request: enough to show the style, few enough to leave room for the reply
CONTEXT_CHARS = 3000  # context excerpt per request


def read_seeds(source: str) -> tuple[list[dict], tuple[str, str] | None]:
    """Seed pairs from a data file, as [{"question", "answer"}], and the file's own two columns when it has
    them (instruction/output, prompt/completion, question/answer ...), so new rows can be written alike."""
    rows, report = load_dataset(source)
    pairs = []
    for row in rows:
        msgs = row.get("messages") or []
        user = next((m["content"] for m in msgs if m["role"] == "user"), "")
        reply = next((m["content"] for m in reversed(msgs) if m["role"] == "assistant"), "")
        if user.strip() and reply.strip():
            pairs.append({"question": user.strip(), "answer": reply.strip()})
    if not pairs:
        raise DataError(f"{report.source}: no question/answer pairs found to use as seeds: give rows with a question "
                        "and an answer (e.g. question/answer or instruction/output columns).")
    columns = {"alpaca": ("instruction", "output"), "prompt_completion": ("prompt", "completion"),
               "pairs": formats.pair_columns(report.columns)}.get(report.format)
    return pairs, columns


def seeds_from_table(table: list[list]) -> list[dict]:
    """Seeds typed into the app's two-column table; blank lines are skipped.

    >>> seeds_from_table([["Q1?", "A1"], ["", ""], ["Q2?", "A2"]])
    [{'question': 'Q1?', 'answer': 'A1'}, {'question': 'Q2?', 'answer': 'A2'}]
    """
    out = []
    for i, row in enumerate(table or []):
        q, a = (str(v or "").strip() for v in (list(row) + ["", ""])[:2])
        if q and a:
            out.append({"question": q, "answer": a})
        elif q or a:
            raise DataError(f"seed row {i + 1}: {'answer' if q else 'question'} is empty: fill it in or clear the row.")
    return out


def eval_questions(source: str) -> list[str]:
    """The user turns of evaluation rows (to keep generated rows from repeating them)."""
    rows, _ = load_dataset(source)
    return [next((m["content"] for m in r.get("messages", []) if m["role"] == "user"), "") for r in rows]


def prompt(seeds: list[dict], task: str, k: int, context: str) -> list[dict]:
    shown = "\n".join(json.dumps(s, ensure_ascii=False) for s in seeds)
    parts = [f"Task: {task.strip()}\n" if task.strip() else "",
             f"Examples of the question/answer pairs we need:\n{shown}\n",
             f"Use facts from this document:\n<document>\n{context}\n</document>\n" if context else "",
             f"Write {k} new pairs in the same style, length and format as the examples, each on a different "
             "specific question, none repeating an example. Reply with a JSON list only: "
             '[{"question": "...", "answer": "..."}, ...]']
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(p for p in parts if p)}]


def judge_prompt(pair: dict) -> list[dict]:
    return [{"role": "system", "content": "You check training data. Reply with one word: yes or no."},
            {"role": "user", "content": f"Question: {pair['question']}\nAnswer: {pair['answer']}\n\n"
                                        "Does the answer actually answer the question, correctly? yes or no."}]


def synthesize(settings: CreateSettings, teacher: Teacher, seeds: list[dict], *, context: list[str] = (),
               evaluation: list[str] = (), progress=None, stop=None) -> tuple[list[dict], CreateReport]:
    """Up to settings.num_pairs new {"question", "answer", "provenance"} rows. progress(kept, target, what);
    stop: a threading.Event that ends the run after the requests in flight (what is kept so far is returned)."""
    s = settings
    if len(seeds) < 1:
        raise DataError("no seed pairs: give at least one (5-10 work best).")
    rng = random.Random(s.seed)
    report = CreateReport(mode="synth", teacher=teacher.name, target=s.num_pairs)
    seen, leaks = F.Seen(s.similarity), F.Seen(s.similarity)
    for i, seed in enumerate(seeds):
        seen.add(seed["question"], f"seed {i + 1}")
    for i, q in enumerate(evaluation):
        leaks.add(q, f"evaluation row {i + 1}")
    docs = [d for d in context if d.strip()]
    kept: list[dict] = []
    budget = -(-s.num_pairs // s.pairs_per_request) * 4 + 2  # a teacher that keeps repeating itself stops here

    def excerpt() -> str:
        if not docs:
            return ""
        doc = rng.choice(docs)
        start = rng.randrange(max(1, len(doc) - CONTEXT_CHARS))
        return doc[start:start + CONTEXT_CHARS]

    asked = 0  # generation requests (judge requests do not count against the budget)
    while len(kept) < s.num_pairs and asked < budget:
        if stop is not None and stop.is_set():
            report.ended = f"stopped by the user after {report.requests} requests"
            break
        # Requests still needed at the yield seen so far (pairs kept per request; the asked-for count before any
        # reply, a quarter at least): a weak teacher whose replies are mostly repeats gets a full round at once.
        per_request = max(len(kept) / asked, 0.25) if asked else s.pairs_per_request
        todo = math.ceil((s.num_pairs - len(kept)) / per_request)
        n = min(teacher.concurrency, todo, budget - asked)
        asked += n
        chats = [prompt(rng.sample(seeds, min(len(seeds), MAX_SEEDS_SHOWN)), s.task, s.pairs_per_request, excerpt())
                 for _ in range(n)]
        replies = teacher.complete_many(chats, stop=stop)
        fresh = []
        for reply in replies:
            if reply is None:
                continue
            report.requests += 1
            where = f"request {report.requests}"
            if isinstance(reply, TeacherError):
                report.drop("generate", where, F.RowError("request", str(reply)), "teacher request failed")
                continue
            try:
                items = F.parse_items(reply)
            except F.ReplyError as e:
                report.drop("parse", where, e, "refused" if "refused" in e.reason else "unreadable reply")
                continue
            for j, item in enumerate(items):
                at = f"{where} item {j + 1}"
                if isinstance(item, F.RowError):
                    report.generated += 1
                    report.drop("parse", at, item, "missing field")
                    continue
                report.generated += 1
                problem = (F.length_problem(item["question"], "question", s.min_chars, s.max_chars)
                           or F.length_problem(item["answer"], "answer", s.min_chars, s.max_chars))
                if problem:
                    report.drop("filter", at, problem, problem.reason.split(" (")[0])
                    continue
                if F.refusal(item["answer"]):
                    report.drop("filter", at, F.RowError("answer", "a refusal, not an answer"), "refused")
                    continue
                leak = leaks.match(item["question"])
                if leak:
                    report.drop("filter", at, F.RowError("question", f"repeats {leak[1]} ({leak[0]})"),
                                "overlaps the evaluation rows")
                    continue
                repeat = seen.match(item["question"])
                if repeat:
                    report.drop("filter", at, F.RowError("question", f"{repeat[0]} duplicate of {repeat[1]}"),
                                f"{repeat[0]} duplicate")
                    continue
                seen.add(item["question"], at)
                fresh.append(dict(item, provenance=dict(teacher=teacher.name, request=report.requests)))
        if s.judge and fresh:
            verdicts = teacher.complete_many([judge_prompt(p) for p in fresh], max_tokens=8, stop=stop)
            report.requests += sum(v is not None for v in verdicts)
            judged = []
            for pair, verdict in zip(fresh, verdicts):
                if isinstance(verdict, str) and F.words(verdict)[:1] == ["no"]:
                    report.drop("judge", f"request {pair['provenance']['request']}",
                                F.RowError("answer", "the judge says it does not answer the question"),
                                "judged not an answer")
                else:
                    judged.append(pair)
            fresh = judged
        kept.extend(fresh)
        if progress:
            progress(min(len(kept), s.num_pairs), s.num_pairs, f"{len(kept)} pairs kept · {teacher.usage.requests} "
                     f"requests, {teacher.usage.prompt_tokens + teacher.usage.completion_tokens} tokens")
    else:
        if len(kept) < s.num_pairs:
            report.ended = (f"ended after {report.requests} requests with {len(kept)} of {s.num_pairs} pairs: the "
                            "teacher's replies were mostly repeats or unusable (see the drops); try more varied "
                            "seeds, a higher temperature or a stronger teacher")
    kept = kept[:s.num_pairs]
    report.kept = len(kept)
    report.usage = teacher.usage.line()
    for row in kept:
        row["provenance"]["settings"] = settings.to_dict(SYNTH_FIELDS)
    return kept, report


def as_rows(pairs: list[dict], columns: tuple[str, str] | None) -> list[dict]:
    """Pairs in the seed file's own two columns, or as canonical messages (with provenance kept).

    >>> as_rows([{"question": "Q?", "answer": "A", "provenance": {}}], ("instruction", "output"))
    [{'instruction': 'Q?', 'output': 'A', 'provenance': {}}]
    """
    if columns:
        return [{columns[0]: p["question"], columns[1]: p["answer"], "provenance": p["provenance"]} for p in pairs]
    return [{"messages": [{"role": "user", "content": p["question"]}, {"role": "assistant", "content": p["answer"]}],
             "provenance": p["provenance"]} for p in pairs]
