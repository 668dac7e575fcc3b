"""Whose runs, uploads and sources a caller may reach, and the server's folders kept out of what is shown.

On a shared app (ftspace.env.multi_user) a run belongs to the caller who started it (its status names the
owner) and an upload to the caller who sent it (kept in a folder named by a hash of the owner); self-hosted,
everything on the machine is its user's. Who the caller is, and which token acts, is ftspace.access's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path

from ftspace import limits, runs
from ftspace.env import cache_dir, multi_user, runs_root, uploads_dir
from ftspace.errors import DataError, escape


def owner_uploads(owner: str) -> Path:
    """This owner's own upload folder (named by a hash: owner strings never become paths)."""
    return uploads_dir() / hashlib.sha256(owner.encode()).hexdigest()[:16]


UPLOADED = " (uploaded)"


def keep_upload(owner: str, name: str, folder: str, data: bytes | None = None, src: Path | None = None) -> Path:
    """Keep a file a caller uploaded (bytes, or a file Gradio received) in their own folder; on a shared app
    within their count and bytes (FTSPACE_MAX_UPLOADS, FTSPACE_MAX_UPLOADS_MB): their oldest uploads are
    removed to make room, and one file larger than all the room is refused."""
    import shutil

    size = len(data) if data is not None else src.stat().st_size
    limits.check("uploads_mb", round(size / 2**20, 3), f"{escape(name, 80)}: this file")
    folder = re.sub(r"[^A-Za-z0-9_.-]", "_", folder)[-40:].lstrip(".")
    dest = owner_uploads(owner) / folder / upload_name(name, "data.jsonl")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if data is not None:
        dest.write_bytes(data)
    else:
        shutil.copyfile(src, dest)
    prune_uploads(owner, dest)
    return dest


def prune_uploads(owner: str, newest: Path) -> None:
    """On a shared app: this owner's oldest uploads removed until their count and bytes are within the limits
    (never `newest`, the file just kept)."""
    kept = sorted((p for p in owner_uploads(owner).glob("*/*") if p.is_file()), key=lambda p: p.stat().st_mtime)
    kept = [p for p in kept if p != newest] + [newest]
    total = sum(p.stat().st_size for p in kept)
    while kept[0] != newest and (limits.over("uploads", len(kept)) or limits.over("uploads_mb", total / 2**20)):
        oldest = kept.pop(0)
        total -= oldest.stat().st_size
        oldest.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            oldest.parent.rmdir()  # its folder, once empty


def upload_name(name: str, default: str) -> str:
    """The name an upload is kept under: letters, digits, '_', '.', '-' only, no leading dot.

    >>> upload_name("..my data ü.jsonl", "data.jsonl"), upload_name("", "rows.jsonl")
    ('my_data__.jsonl', 'rows.jsonl')
    """
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name or "").lstrip(".") or default


def shown_dataset(dataset: str) -> str:
    """How the app shows a dataset: an upload by its file name ("qa.csv (uploaded)"), never by where the server
    keeps it (shared or self-hosted alike); any other path as it is (self-hosted, it is a path you typed)."""
    if not dataset or dataset.startswith("example:"):
        return dataset
    path = Path(dataset).expanduser()
    if path.is_absolute() and path.resolve().is_relative_to(uploads_dir().resolve()):
        return path.name + UPLOADED
    return dataset


def owner_models() -> list[str]:
    """Model folders the app's owner offers every visitor as base models (FTSPACE_OWNER_MODELS, separated by
    the path separator), named exactly; no other folder on the server is a base model on a shared app, and only
    these travel with a visitor's Jobs run."""
    return [p for p in os.environ.get("FTSPACE_OWNER_MODELS", "").split(os.pathsep) if p.strip()]


def adopt(old: str, new: str) -> None:
    """What one page made as `old` before it knew its browser's id (its first events, sent while the page was still
    loading, carry none: their owner is the page's session), given to `new`, the owner its later events have:
    its uploads (copied) and its runs. Both are the same page's (the caller derives them from one request)."""
    import shutil

    if old == new:
        return
    source, dest = owner_uploads(old), owner_uploads(new)
    if source.is_dir():
        for folder in source.iterdir():
            target = dest / folder.name
            if not target.exists():  # copied: a run started from it reads it where it was
                shutil.copytree(folder, target)
    for run in runs.list_runs():
        if run.read_status().get("owner") == old:
            run.set_status(owner=new)


def dataset_from_shown(owner: str | tuple[str, ...], text: str) -> str:
    """The dataset a visitor's text means: "qa.csv (uploaded)" is this owner's newest upload of that name (among
    the uploads of each owner given: a page's browser and its session)."""
    text = (text or "").strip()
    if not text.endswith(UPLOADED):
        return text
    import glob

    name = text[: -len(UPLOADED)]
    if upload_name(name, "") != name:  # no '..', '/', or anything an upload is never named
        raise DataError(f"{escape(name, 80)}: no upload of yours has that name: upload the file again.")
    found = sorted((path for who in ((owner,) if isinstance(owner, str) else owner)
                    for path in owner_uploads(who).glob(f"*/{glob.escape(name)}")), key=lambda p: p.stat().st_mtime)
    if not found:
        raise DataError(f"{escape(name, 80)}: no upload of yours has that name: upload the file again.")
    return str(found[-1])


def scrub_paths(text: str) -> str:
    """Server folders taken out of text the app shows (log lines, errors, agents' answers): the runs and uploads
    folders become "runs" and "uploads" (what a run's files are called in its folder), the app's data folder, the
    model caches and the app's own folder short labels. The CLI shows paths as they are."""
    if not text:
        return text
    from huggingface_hub import constants

    labels = [(runs_root(), "runs"), (uploads_dir(), "uploads"), (runs_root().parent, "<app>"),
              (Path(constants.HF_HUB_CACHE), "<hf-cache>"),
              (cache_dir(), "<cache>"), (Path(__file__).resolve().parent.parent, "<ftspace>")]
    for folder, label in sorted(labels, key=lambda item: -len(str(item[0]))):
        text = text.replace(str(folder), label)
    return text


def visible_runs(owner: str) -> list[runs.Run]:
    items = runs.list_runs()
    if not multi_user():
        return items
    return [r for r in items if r.read_status().get("owner") == owner]


def own_run(run_id: str, owner: str) -> runs.Run:
    """The run, if this owner may see it; the same error as a missing run otherwise."""
    run = runs.get(run_id)
    if multi_user() and run.read_status().get("owner") != owner:
        raise runs.RunError(f"No run '{run_id}': pick one of your runs.")
    return run
