"""Data: load (file, Hub, examples) -> detect format -> convert to messages -> validate -> report.

`load_dataset(cfg)` is the one entry point: it returns the converted rows and a `DataReport` that
says how many rows were read and kept, and why each dropped row was dropped.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from ftspace.data import formats, messages
from ftspace.data.load import bundled_examples, iter_rows, resolve
from ftspace.errors import DataError, escape

__all__ = ["DataReport", "open_dataset", "load_dataset", "check_usable", "scan", "split", "validation_rows",
           "held_out_rows", "training_rows", "general_rows", "bundled_examples", "resolve", "check_rewards"]

MAX_DROPS_LISTED = 200  # a report lists this many dropped rows and counts the rest


@dataclass
class DataReport:
    source: str
    format: str
    columns: list[str]
    rows_read: int = 0
    rows_kept: int = 0
    dropped: list[dict] = field(default_factory=list)  # [{"row": 12, "field": "output", "reason": "..."}]
    rows_dropped: int = 0
    other_formats: dict = field(default_factory=dict)  # {"sharegpt": first row number} for mixed files
    tokens: dict | None = None  # min / mean / p50 / p95 / max, over_max_seq_length, max_seq_length
    notes: dict = field(default_factory=dict)  # what conversion did: {messages.NOTE_* or formats.NOTE_*: count}
    layout: str = ""  # how a .txt file was read into rows (paragraphs, lines, one document)
    documents: int = 0  # text rows: distinct documents (a very long one comes as several rows)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        lines = [f"{self.source}: format {self.format}, {self.rows_read} rows read, {self.rows_kept} kept, "
                 f"{self.rows_dropped} dropped"]
        if self.layout:
            lines.append(f"  read as {self.layout}")
        for note, count in self.notes.items():
            lines.append(f"  {count} {note}")
        for d in self.dropped[:20]:
            lines.append(f"  row {d['row']}: {d['field']}: {d['reason']}")
        if self.rows_dropped > 20:
            lines.append(f"  ... and {self.rows_dropped - 20} more dropped rows")
        if self.tokens and self.tokens.get("windows"):
            t = self.tokens
            lines.append(f"{t['windows']} windows of at most {t['max_seq_length']} tokens from {t['documents']} "
                         f"document{'s' if t['documents'] != 1 else ''} (stride {t['stride']}); tokens per window: min "
                         f"{t['min']}, mean {t['mean']:.0f}, max {t['max']}")
        elif self.tokens:
            t = self.tokens
            lines.append(f"tokens per example: min {t['min']}, mean {t['mean']:.0f}, p50 {t['p50']}, "
                         f"p95 {t['p95']}, max {t['max']}; {t['over_max_seq_length']} of {t['count']} exceed "
                         f"max_seq_length {t['max_seq_length']}")
        return "\n".join(lines)


def open_dataset(source: str, *, dataset_format: str = "auto", prompt_column: str = "",
                 response_column: str = "", config: str = "", split: str = "train",
                 limit: int | None = None, token: str | None = None,
                 method: str = "sft") -> tuple[DataReport, Iterator[dict]]:
    """Detect the format from the first row; return the report and a stream of valid examples.

    The stream holds one row at a time (a 1 GB JSONL file is never in memory whole); the report's
    counts fill in as it is consumed. Raises DataError for a source that cannot be used at all (also
    mid-stream: images, audio or video in any row). A Hub dataset is read with `token` only (the
    caller's, from ftspace.access; None sends none). `method` "sft" turns preference rows into their
    chosen conversation; a preference method ("dpo", "orpo") needs preference rows and keeps them whole; "grpo"
    reads any row with a prompt as {"prompt", "answer"} (formats.to_prompt).
    """
    name = _display_name(source)
    layout = {}
    rows = iter_rows(source, config, split, token=token, layout=layout)
    first = next(rows, None)
    if first is None:
        raise DataError(f"{name}: no rows found: the file needs at least one example.")
    columns = list(first[1])
    escaped = [escape(c, 60) for c in columns]  # column names are the visitor's text: one line each
    shown = ", ".join(escaped)
    grpo = method == "grpo"
    fmt = "columns" if (prompt_column or response_column) else dataset_format
    if grpo:  # any row with a prompt: read as prompts (and answers), whatever its format
        media = next((c for c in formats.MEDIA_COLUMNS if first[1].get(c) not in (None, [], "")), None)
        fmt = "multimodal" if media else "prompts"
    if fmt == "auto":
        fmt = formats.detect_format(columns, first[1])
        if fmt is None:
            raise DataError(f"{name}: cannot tell the format from the columns {escaped}: set dataset_format, "
                            "or map a prompt_column and response_column.")
    try:
        convert = (lambda row: formats.to_prompt(row, prompt_column, response_column)) if fmt == "prompts" else \
            formats.converter_for(fmt, columns, prompt_column, response_column)
    except messages.RowError as e:
        raise DataError(f"{name}: {escape(e.reason)} (columns: {shown}).") from None
    if prompt_column or response_column:
        missing = [c for c in (prompt_column, response_column) if c and c not in columns]
        if missing:
            raise DataError(f"{name}: column {escape(missing[0], 60)!r} not found: the columns are {shown}.")
    if fmt == "multimodal":
        media = next(c for c in formats.MEDIA_COLUMNS if first[1].get(c) not in (None, [], ""))
        raise DataError(f"{name}: {messages.media_reason(f'the {escape(media, 60)!r} column')}.")
    preference = method in ("dpo", "orpo")
    if preference and fmt != "preference":
        raise DataError(f"{name}: method {method} learns from preference rows (prompt, chosen, rejected), but this "
                        f"file is {fmt}: use a preference dataset, or set method to sft.")
    if grpo and formats.detect_format(columns, first[1]) == "preference":
        raise DataError(f"{name}: method grpo learns from prompts with answers, but this file holds preference rows "
                        "(chosen, rejected): set method dpo or orpo, or use prompts with answers.")
    report = DataReport(source=name, format=fmt, columns=columns, layout=layout.get("layout", ""))

    last_document = [None]

    def examples():
        for row_no, row in _chain(first, rows):
            report.rows_read += 1
            if not grpo and formats.prompts_ready(row):
                messages.note(report.notes, formats.NOTE_PROMPTS)
            try:
                example = messages.validate(convert(row), report.notes)
                if grpo and example["answer"]:
                    messages.note(report.notes, formats.NOTE_PROMPTS)
                if grpo and example.get("tools"):
                    messages.note(report.notes, formats.NOTE_PROMPT_TOOLS)
                if not preference and not grpo:
                    example = formats.as_sft(example, report.notes)
            except messages.MediaError as e:
                raise DataError(f"{name}: row {row_no}: {escape(e.field, 60)}: {escape(e.reason)}.") from None
            except messages.RowError as e:
                report.rows_dropped += 1
                other = formats.detect_format(list(row), row) if e.reason.startswith("column missing") else None
                if other and other != fmt:
                    if dataset_format == "auto":  # an explicit format keeps the matching rows on purpose
                        report.other_formats.setdefault(other, row_no)
                    e = messages.RowError("columns", f"this row is in {other} format; the file was detected as {fmt}")
                if len(report.dropped) < MAX_DROPS_LISTED:
                    report.dropped.append({"row": row_no, "field": escape(e.field, 60), "reason": escape(e.reason)})
            else:
                report.rows_kept += 1
                if "text" in example and row_no != last_document[0]:
                    report.documents += 1
                    last_document[0] = row_no
                yield example
            if limit and report.rows_read >= limit:
                return

    return report, examples()


def load_dataset(source: str, **options) -> tuple[list[dict], DataReport]:
    """Read, detect, convert and validate everything, in memory (small data: tests, the eval rows of a
    run). Commands that may meet a large file stream with `open_dataset` and call `check_usable` after.
    Raises DataError when nothing usable remains."""
    report, stream = open_dataset(source, **options)
    kept = list(stream)
    check_usable(report)
    return kept, report


def scan(source: str, **options) -> DataReport:
    """Read a dataset through once (or up to `limit` rows), keeping nothing: its report, or DataError as
    `load_dataset` raises."""
    report, stream = open_dataset(source, **options)
    for _ in stream:
        pass
    check_usable(report)
    return report


def check_usable(report: DataReport):
    """After a stream is consumed: refuse a file of mixed formats or with no usable row (DataError)."""
    if report.other_formats:
        others = ", ".join(f"row {row} is {fmt}" for fmt, row in report.other_formats.items())
        raise DataError(f"{report.source}: mixed formats: {others}, but the first row is {report.format}: use one "
                        "format per file (or set dataset_format to keep only the matching rows).")
    if not report.rows_kept:
        first_drop = report.dropped[0]
        fix = ("These rows are prompts with answers: set method grpo to learn from them by reward."
               if report.notes.get(formats.NOTE_PROMPTS) else "Check the format or the column mapping.")
        raise DataError(f"{report.source}: no usable rows ({report.rows_read} read as {report.format}); row "
                        f"{first_drop['row']}: {first_drop['field']}: {first_drop['reason']}. {fix}")


def check_rewards(report: DataReport, cfg) -> None:
    """After a GRPO run's data is read: every reward finds the column it needs in some row (DataError in one line
    otherwise). A row without it scores 0 on that reward."""
    from ftspace.rewards import needed_columns

    have = {"answer": report.notes.get(formats.NOTE_PROMPTS, 0),
            "tools": report.notes.get(formats.NOTE_PROMPT_TOOLS, 0)}
    for column, reward in needed_columns(cfg).items():
        if not have.get(column):
            where = {"answer": "an answer column (answer, solution, ...) or a reply to take as the reference",
                     "tools": "a tools column (the functions a reply may call)"}[column]
            raise DataError(f"{report.source}: reward {reward} needs each row's {column}, and none of its "
                            f"{report.rows_kept} rows has one: add {where}, or choose other rewards.")


AUTO_MIN_ROWS, AUTO_SHARE, AUTO_MAX_ROWS = 100, 0.1, 100  # automatic validation (config.AUTO_VALIDATION)


def _count(n: int, size: float) -> int:
    if size < 0:  # automatic: enough rows to judge a validation loss by (10+), and the rest still most of the data
        return min(AUTO_MAX_ROWS, round(n * AUTO_SHARE)) if n >= AUTO_MIN_ROWS else 0
    return int(size) if size >= 1 else (max(1, round(n * size)) if size else 0)


def held_out_rows(n: int, validation_size: float, seed: int, test_size: float = 0.0) -> tuple[set[int], set[int]]:
    """(validation, test): which of n rows (0-based) are held out. Each size is a fraction (< 1) or a row
    count (>= 1); validation_size -1 is automatic (10%, at most 100 rows, where there are 100 rows or more;
    none below). Seeded, so a run, its estimate and its evaluation pick the same rows; the two sets never
    overlap, and the rest are training rows.

    >>> valid, test = held_out_rows(10, 0.2, 1, test_size=3)
    >>> len(valid), len(test), valid & test
    (2, 3, set())
    >>> [len(held_out_rows(n, -1, 1)[0]) for n in (40, 99, 100, 640, 5000)]
    [0, 0, 10, 64, 100]
    """
    n_valid, n_test = _count(n, validation_size), _count(n, test_size)
    if n_valid + n_test >= n:
        sizes = [f"{name} {size:g}" for name, size in (("validation_size", validation_size), ("test_size", test_size))
                 if size]
        raise DataError(f"{' and '.join(sizes)} {'leave' if len(sizes) > 1 else 'leaves'} no training rows out of "
                        f"{n}: lower {'them' if len(sizes) > 1 else 'it'}.")
    picked = random.Random(seed).sample(range(n), n_valid + n_test) if n_valid + n_test else []
    return set(picked[:n_valid]), set(picked[n_valid:])


def training_rows(n: int, cfg) -> int:
    """Rows a run with config `cfg` trains on, out of n usable rows: held-out rows out, general rows in."""
    valid, test = held_out_rows(n, cfg.validation_size, cfg.seed, cfg.test_size)
    own = n - len(valid) - len(test)
    return own + general_count(own, cfg.mix_general_data)


def general_count(own_rows: int, mix: float) -> int:
    return round(own_rows * mix)


def general_rows(own_rows: int, mix: float, seed: int) -> list[dict]:
    """The bundled general rows (`example:general`) to mix into `own_rows` training rows: `mix` per row,
    drawn in a seeded order, repeated when more are asked for than there are."""
    count = general_count(own_rows, mix)
    if not count:
        return []
    rows, _ = load_dataset("example:general")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    return [rows[order[i % len(rows)]] for i in range(count)]


def validation_rows(n: int, validation_size: float, seed: int) -> set[int]:
    """The validation rows of `held_out_rows` when there is no test split."""
    return held_out_rows(n, validation_size, seed)[0]


def split(rows: list[dict], validation_size: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Shuffle-free, seeded split of rows in memory (see `validation_rows`)."""
    picked = validation_rows(len(rows), validation_size, seed)
    if not picked:
        return rows, []
    train = [r for i, r in enumerate(rows) if i not in picked]
    valid = [r for i, r in enumerate(rows) if i in picked]
    return train, valid


def _chain(first, rest):
    yield first
    yield from rest


def _display_name(source: str) -> str:
    kind, where = resolve(source)
    return escape(where.name if kind == "file" else str(where), 120)  # a file name is the visitor's text too
