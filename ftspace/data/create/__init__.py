"""Make a dataset: many pairs from a few examples (`synth`), or RAFT rows from documents (`raft`).

Both ask a teacher (`teacher.Teacher`: the bundled model, an OpenAI-compatible server, or Hugging Face
Inference Providers), parse its replies, filter what comes back (`filters`), and write a JSONL file
that goes through the same validation report as any dataset. A `CreateReport` says how many rows
were generated, kept, and why each dropped one was dropped.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ftspace.data.create.settings import RAFT_FIELDS, SYNTH_FIELDS, CreateSettings  # noqa: F401
from ftspace.data.messages import RowError

MAX_DROPS_LISTED = 200


@dataclass
class CreateReport:
    mode: str  # "synth" or "raft"
    teacher: str
    target: int = 0  # rows asked for (synth) or questions planned (raft)
    requests: int = 0  # teacher requests sent
    generated: int = 0  # candidate rows read from the replies
    kept: int = 0
    dropped: list[dict] = field(default_factory=list)  # {"step", "where", "field", "reason"}
    reasons: dict = field(default_factory=dict)  # why, counted: {"near duplicate": 3, ...}
    usage: str = ""
    ended: str = ""  # why it ended before the target, if it did
    output: str = ""
    extra: dict = field(default_factory=dict)  # raft: chunks, documents, rows without the oracle

    def drop(self, step: str, where: str, error: RowError, kind: str):
        self.reasons[kind] = self.reasons.get(kind, 0) + 1
        if len(self.dropped) < MAX_DROPS_LISTED:
            self.dropped.append(dict(step=step, where=where, field=error.field, reason=error.reason))

    def replies(self, step: str, keyed):
        """(key, where, reply) -> (key, where, text) for each reply that came back: counts the requests, lists
        each one that failed for good (a TeacherError), skips those not sent (None: stopped)."""
        for key, where, reply in keyed:
            if reply is None:
                continue
            self.requests += 1
            if isinstance(reply, Exception):
                self.drop(step, where, RowError("request", str(reply)), "teacher request failed")
                continue
            yield key, where, reply

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        what = "pairs" if self.mode == "synth" else "RAFT rows"
        lines = [f"{self.kept} {what} kept of {self.generated} generated ({self.requests} teacher requests, "
                 f"teacher {self.teacher})"]
        if self.extra:
            lines.append("  " + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in self.extra.items()))
        for kind, n in Counter(self.reasons).most_common():
            lines.append(f"  dropped {n}: {kind}")
        for d in self.dropped[:10]:
            lines.append(f"    {d['step']} {d['where']}: {d['field']}: {d['reason']}")
        if self.ended:
            lines.append(f"  {self.ended}")
        if self.usage:
            lines.append(f"  {self.usage}")
        return "\n".join(lines)


def write_rows(rows: list[dict], path: str | Path, report: CreateReport) -> Path:
    """The rows as JSONL (written whole, then renamed into place) and the report beside them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    report.output = path.name
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    path.with_name(path.stem + ".report.json").write_text(json.dumps(report.to_dict(), indent=1, ensure_ascii=False))
    return path


def preview(settings: CreateSettings, mode: str, inputs: int, chunks: int = 0) -> dict:
    """Requests, tokens and time before starting: inputs = seed pairs (synth) or chunks (raft).
    Time assumes a measured pace for the bundled teacher on 2 CPU cores and a typical hosted one."""
    s = settings
    if mode == "synth":
        requests = -(-s.num_pairs // s.pairs_per_request)
        requests = int(requests * 1.5) + (s.num_pairs if s.judge else 0)  # about a third come back as repeats
        prompt = 400 + 60 * min(inputs, 6)
    else:
        requests = chunks + chunks * s.questions_per_chunk
        prompt = 200 + s.chunk_tokens
    completion = s.max_tokens // 2
    pace = SECONDS_PER_TOKEN[s.teacher]
    seconds = requests * completion * pace / (LOCAL_BATCH_SPEEDUP if s.teacher == "default" else s.concurrency)
    return dict(requests=requests, prompt_tokens=requests * prompt, completion_tokens=requests * completion,
                seconds=round(seconds), billed=BILLED[s.teacher])


# Seconds per generated token: the bundled teacher wrote ~930 tokens (characters / 4) in 3 requests taking ~100 s
# with its loading, on this project's 2-core CPU (2026-12-01): about 10 tokens/s. A hosted model streams
# 30-60 tokens/s; 40 is a middle guess, not a measurement.
SECONDS_PER_TOKEN = {"default": 1 / 10, "openai": 1 / 40, "hf": 1 / 40}
# The bundled teacher answers 4 chats in one batched generation in about a third of the time of one at a time
# (bench/RESULTS.md section 11); 2.5, not 3, as replies of unequal length keep the batch going to the longest.
LOCAL_BATCH_SPEEDUP = 2.5
BILLED = {"default": "nothing: runs on this machine",
          "openai": "whoever owns the endpoint's key, at its price per token",
          "hf": "your Hugging Face account (Inference Providers: free monthly credits, then the provider's price)"}


def describe_preview(p: dict) -> str:
    minutes = p["seconds"] / 60
    when = f"about {minutes:.0f} min" if minutes >= 1 else "under a minute"
    return (f"About {p['requests']} teacher requests, ~{p['prompt_tokens']:,} prompt + ~{p['completion_tokens']:,} "
            f"completion tokens, {when}. Billed to {p['billed']}.")
