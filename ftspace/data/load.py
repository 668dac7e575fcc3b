"""Read rows from a local file, a Hub dataset or a bundled example.

Every reader yields `(row_number, row)` pairs, row numbers counted from 1 as a person reading the
file would (for CSV, the first data row under the header is row 1), so errors can name them.
Readers stream: a large JSONL file is never held in memory whole.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

from ftspace.access import HUB_ID, hub_shaped
from ftspace.config import DATA_SUFFIXES
from ftspace.env import multi_user
from ftspace.errors import DataError

EXAMPLES_DIR = Path(__file__).resolve().parent.parent.parent / "examples"

csv.field_size_limit(1 << 30)


def bundled_examples() -> dict[str, Path]:
    """Bundled example datasets by name: {'alpaca': .../examples/alpaca.jsonl, ...}."""
    return {p.stem: p for p in sorted(EXAMPLES_DIR.glob("*")) if p.suffix in DATA_SUFFIXES}


def _json_reason(e) -> str:
    """json's message without its own position ("Unterminated string starting at"), which we add."""
    return e.msg.rstrip(": ").removesuffix(" at")


def resolve(source: str) -> tuple[str, Path | str]:
    """Classify a dataset spec as ('file', Path) or ('hub', id).

    >>> resolve('example:facts')[0]
    'file'
    """
    source = source.strip()
    if source.startswith("example:"):
        name = source.split(":", 1)[1]
        examples = bundled_examples()
        if name not in examples:
            raise DataError(f"No bundled example '{name}': choose one of {', '.join(examples)}.")
        return "file", examples[name]
    path = Path(source).expanduser()
    if multi_user() and hub_shaped(source):
        return "hub", source  # a visitor's text on a shared app: a Hub id, whatever the server's disk holds
    if path.exists():
        if path.is_dir():
            raise DataError(f"{path}: is a folder; name a data file inside it ({', '.join(DATA_SUFFIXES)}).")
        return "file", path
    if path.suffix.lower() in DATA_SUFFIXES or source.startswith((".", "/", "~")):
        raise DataError(f"{source}: file not found. Check the path, or upload the file.")
    if ".." in source or not HUB_ID.match(source):
        raise DataError(f"{source!r} is neither a file nor a valid Hub dataset id (owner/name, letters, digits, "
                        "'-', '_' and '.'): check the spelling.")
    return "hub", source


def iter_rows(source: str, config: str = "", split: str = "train", token: str | None = None,
              layout: dict | None = None) -> Iterator[tuple[int, dict]]:
    """`layout`, when given, receives {"layout": "..."} for a .txt file: how its text became rows."""
    kind, where = resolve(source)
    if kind == "hub":
        return iter_hub(where, config, split, token=token)
    return iter_file(where, layout)


def iter_file(path: Path, layout: dict | None = None) -> Iterator[tuple[int, dict]]:
    suffix = path.suffix.lower()
    if suffix not in DATA_SUFFIXES:
        raise DataError(f"{path.name}: unsupported file type '{suffix}': use one of {', '.join(DATA_SUFFIXES)}.")
    if path.stat().st_size == 0:
        raise DataError(f"{path.name}: the file is empty: it needs at least one row.")
    _refuse_binary(path, suffix)
    if suffix == ".txt":
        how = text_layout(path)
        if layout is not None:
            layout["layout"] = TEXT_LAYOUTS[how]
        return _text(path, how)
    reader = {".jsonl": _jsonl, ".json": _json, ".csv": _csv, ".tsv": _csv, ".parquet": _parquet}[suffix]
    return reader(path)


def _refuse_binary(path: Path, suffix: str):
    if suffix == ".parquet":
        return
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if zipfile.is_zipfile(path) or head.startswith(b"PK\x03\x04"):
        raise DataError(f"{path.name}: is a zip archive, not a {suffix} file: unzip it and use the file inside.")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{path.name}: UTF-16 text: save the file as UTF-8.")
    if b"\x00" in head:
        raise DataError(f"{path.name}: contains binary data, not {suffix} text: check that it is the right file.")


def _open_text(path: Path):
    """UTF-8 text (a BOM is fine); anything else is named with the byte offset to look at."""
    raw = open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="")


def _decode_error(path: Path, e: UnicodeDecodeError, row: int | None = None) -> DataError:
    where = f"row {row}: " if row else ""
    return DataError(f"{path.name}: {where}not UTF-8 text ({e.reason} at byte {e.start}): save the file as UTF-8.")


def _jsonl(path: Path):
    with _open_text(path) as fh:
        line_no = 0
        try:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path.name}: row {line_no}: not valid JSON ({_json_reason(e)} at column {e.colno}): "
                                    "fix or remove that line.") from None
                except RecursionError:
                    raise DataError(f"{path.name}: row {line_no}: JSON nested too deeply to be a row of data: check "
                                    "that it is the right file.") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path.name}: row {line_no}: expected a JSON object per line, got "
                                    f"{type(row).__name__}: write each row as an object of named fields.")
                yield line_no, row
        except UnicodeDecodeError as e:
            raise _decode_error(path, e, line_no + 1) from None


def _json(path: Path):
    try:
        with _open_text(path) as fh:
            data = json.load(fh)
    except UnicodeDecodeError as e:
        raise _decode_error(path, e) from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path.name}: not valid JSON ({_json_reason(e)} at line {e.lineno}, column {e.colno}): "
                        "fix it there.") from None
    except RecursionError:
        raise DataError(f"{path.name}: JSON nested too deeply to be rows of data: check that it is the right "
                        "file.") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1 and all(isinstance(r, dict) for r in lists[0]):
            data = lists[0]  # {"data": [...]} and similar wrappers
        else:
            raise DataError(f"{path.name}: a JSON object, not a list of rows: use a JSON array of objects "
                            "or one object per line (.jsonl).")
    if not isinstance(data, list):
        raise DataError(f"{path.name}: expected a JSON array of objects, got {type(data).__name__}.")
    for i, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise DataError(f"{path.name}: row {i}: expected an object, got {type(row).__name__}: write each row "
                            "as an object of named fields.")
        yield i, row


def _csv(path: Path):
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    row_no = 0
    try:
        with _open_text(path) as fh:
            reader = csv.reader(fh, delimiter=delimiter, strict=True)
            header = next(reader, None)
            if not header or not any(h.strip() for h in header):
                raise DataError(f"{path.name}: no header row: the first line must name the columns.")
            header = [h.strip() for h in header]
            for row_no, values in enumerate(reader, start=1):
                if not values:
                    continue
                if len(values) != len(header):
                    raise DataError(f"{path.name}: row {row_no}: {len(values)} fields where the header has "
                                    f"{len(header)}: check quoting and separators on that row.")
                yield row_no, dict(zip(header, values))
    except UnicodeDecodeError as e:
        raise _decode_error(path, e, row_no + 1) from None
    except csv.Error as e:
        raise DataError(f"{path.name}: row {row_no + 1}: malformed CSV ({e}): check for an unbalanced quote.") from None


def _parquet(path: Path):
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path.name}: not a readable Parquet file ({str(e).splitlines()[0]}): check that it is "
                        "the right file, or export it again.") from None
    row_no = 0
    for batch in pf.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            row_no += 1
            yield row_no, row


TEXT_LAYOUTS = {"paragraphs": "documents separated by blank lines", "lines": "one document per line",
                "document": "one document"}
TEXT_PIECE_CHARS = 1_000_000  # a longer document is yielded in pieces (cut at line ends), each cut into windows
LAYOUT_SAMPLE_LINES = 2000
SENTENCE_END = (".", "!", "?", '"', "'", "\u201d", ")", "]", "}", ":", ";")


def text_layout(path: Path) -> str:
    """How a .txt file holds its documents, from its first lines: "paragraphs" when blank lines separate
    them; with no blank lines, "lines" when most lines end a sentence (one document per line, as a corpus of
    posts or records), else "document" (one text hard-wrapped at a width)."""
    ends, lines = 0, 0
    try:
        with _open_text(path) as fh:
            for line in fh:
                text = line.strip()
                if not text:
                    if lines:
                        return "paragraphs"
                    continue
                lines += 1
                ends += text.endswith(SENTENCE_END)
                if lines >= LAYOUT_SAMPLE_LINES:
                    break
    except UnicodeDecodeError as e:
        raise _decode_error(path, e) from None
    return "lines" if lines > 1 and ends / lines >= 0.5 else "document"


def _text(path: Path, layout: str = "paragraphs"):
    """Plain text for language modelling, one row per document (see `text_layout`); a row number is the
    document's first line. A document longer than TEXT_PIECE_CHARS comes in pieces with the same number."""
    chunk: list[str] = []
    size, start = 0, None  # start: the current document's first line, None between documents
    with _open_text(path) as fh:
        try:
            for line_no, line in enumerate(fh, start=1):
                text = line.rstrip("\r\n")
                if layout == "lines":
                    if text.strip():
                        yield line_no, {"text": text}
                    continue
                if not text.strip() and layout == "paragraphs":
                    if chunk:
                        yield start, {"text": "\n".join(chunk)}
                    chunk, size, start = [], 0, None
                    continue
                if start is None:
                    if not text.strip():
                        continue
                    start = line_no
                chunk.append(text)
                size += len(text) + 1
                if size >= TEXT_PIECE_CHARS:
                    yield start, {"text": "\n".join(chunk)}
                    chunk, size = [], 0
            if chunk and "\n".join(chunk).strip():
                yield start, {"text": "\n".join(chunk).rstrip()}
        except UnicodeDecodeError as e:
            raise _decode_error(path, e) from None


def iter_hub(dataset_id: str, config: str = "", split: str = "train",
             token: str | None = None) -> Iterator[tuple[int, dict]]:
    """Rows of a Hub dataset, streamed; honours HF_ENDPOINT and HF_HUB_OFFLINE. `token` is the caller's
    (ftspace.access.hub_token); None sends no token at all, whatever HF_TOKEN the server has."""
    import datasets

    from ftspace.access import as_hub_arg, check_hub_read

    try:
        check_hub_read(dataset_id, "dataset", token)
    except PermissionError as e:
        raise DataError(f"Hub dataset {e}") from None
    try:
        ds = datasets.load_dataset(dataset_id, config or None, split=split or "train", streaming=True,
                                   token=as_hub_arg(token))
        it = iter(ds)
        first = next(it, None)
    except Exception as e:
        raise DataError(_hub_message(dataset_id, e)) from None
    if first is None:
        raise DataError(f"Hub dataset {dataset_id}: split '{split}' has no rows.")
    yield 1, first
    for i, row in enumerate(it, start=2):
        yield i, row


def hub_layout(dataset_id: str, token: str | None = None) -> dict[str, list[str]]:
    """{config: [splits]} of a Hub dataset, read from its card and file list (no data is downloaded), with the
    caller's token only. Raises DataError with what to do for a gated, private or missing dataset."""
    import datasets

    from ftspace.access import as_hub_arg, check_hub_read

    kind, where = resolve(dataset_id)
    if kind != "hub":
        raise DataError(f"{dataset_id!r} is a local file, not a Hub dataset id.")
    try:
        check_hub_read(where, "dataset", token)
    except PermissionError as e:
        raise DataError(f"Hub dataset {e}") from None
    try:
        configs = datasets.get_dataset_config_names(where, token=as_hub_arg(token))
        return {name: list(datasets.get_dataset_split_names(where, name, token=as_hub_arg(token)))
                for name in configs}
    except Exception as e:
        raise DataError(_hub_message(where, e)) from None


def _hub_message(dataset_id: str, e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    low = text.lower()
    if "offline" in low or "connect" in low or "resolve" in low or "network" in low:
        return (f"Hub dataset {dataset_id}: the Hub cannot be reached (offline?): upload the file instead, "
                "or try again when online.")
    if "doesn't exist" in low or "not found" in low or "404" in low or "cannot find" in low:
        return f"Hub dataset {dataset_id}: not found on the Hub (or private): check the id and your token."
    if "config" in low:
        return f"Hub dataset {dataset_id}: {text} Set dataset_config to one of its configs."
    if "split" in low:
        return f"Hub dataset {dataset_id}: {text} Set dataset_split to one of its splits."
    return f"Hub dataset {dataset_id}: could not be loaded ({text})."
