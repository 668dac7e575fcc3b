"""Before training, on CPU: the model on local disk, the data read, converted, split and tokenized.

A shared app prepares a run inside the visitor's own request, with the visitor's token, so the process
that trains (a worker without credentials, or a ZeroGPU call) reads only local files and spends its
time training: paid GPU seconds are not spent downloading or tokenizing. A worker started by the CLI
prepares its run itself, with the machine's token. What it leaves in the run folder:

    runs/<id>/prepared/prepared.json   the model folder, data report, split sizes, tokenizer probe
    runs/<id>/prepared/train.jsonl     converted training rows (eval.jsonl: validation, test.jsonl: test rows)
    runs/<id>/prepared/train/, eval/   the same rows tokenized (Arrow), as the trainer takes them
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from ftspace.runs import Run

# A conversation tokenized at preparation and again by the trainer's tokenizer: equal ids mean the
# prepared data is what the trainer would have made itself (Unsloth may hand back its own tokenizer).
PROBE = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"},
                      {"role": "assistant", "content": "Paris."}]}


def prepared_dir(run: Run) -> Path:
    return run.path / "prepared"


def read_prepared(run: Run) -> dict | None:
    try:
        return json.loads((prepared_dir(run) / "prepared.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def prepare(run: Run, token: str | None, log=print) -> dict:
    """Download, convert, split and tokenize once per run (a resumed run reuses it); the summary.

    Streamed end to end, so memory does not grow with the dataset: rows are converted one at a time into
    a staging file, split by row number, and tokenized into Arrow in batches."""
    done = read_prepared(run)
    if done is not None:
        return done
    from ftspace import limits, models
    from ftspace.config import AUTO_VALIDATION
    from ftspace.data import (AUTO_MAX_ROWS, AUTO_MIN_ROWS, AUTO_SHARE, check_rewards, check_usable, general_rows,
                              held_out_rows, open_dataset)

    cfg = run.config()
    weights = models.weights_for(cfg.model_name, cfg.load_in_4bit)
    if weights != cfg.model_name:  # on the CPU, before any GPU call: a GPU call then loads it, nothing to quantize
        log(f"4-bit: {cfg.model_name}'s pre-quantized release {weights} is fetched now, rather than the 16-bit "
            "weights quantized while loading")
    model_path = models.resolve_model(weights, progress=log, token=token)
    report, stream = open_dataset(cfg.dataset, dataset_format=cfg.dataset_format, prompt_column=cfg.prompt_column,
                                  response_column=cfg.response_column, config=cfg.dataset_config,
                                  split=cfg.dataset_split, token=token, method=cfg.method, limit=limits.rows_cap())
    final, staging = prepared_dir(run), run.path / ".prepared.incoming"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    keep_within_limits(stream, staging / "all.jsonl", report, log)
    check_usable(report)
    if cfg.method == "grpo":
        check_rewards(report, cfg)
    from transformers import AutoTokenizer

    from ftspace.data.tokenize import set_chat_template, settle_reasoning_note

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    set_chat_template(tokenizer, cfg.chat_template)
    settle_reasoning_note(report, tokenizer)
    log(report.summary())
    valid, test = held_out_rows(report.rows_kept, cfg.validation_size, cfg.seed, cfg.test_size)
    if cfg.validation_size == AUTO_VALIDATION:
        rule = f"{AUTO_SHARE:.0%}, at most {AUTO_MAX_ROWS}, from {AUTO_MIN_ROWS} rows up"
        log(f"validation: {len(valid)} of {report.rows_kept} rows held out (automatic: {rule})" if valid else
            f"validation: none held out (automatic: {rule}; this data has {report.rows_kept}): set validation_size to "
            "hold some out anyway")
    digest = hashlib.sha256()
    with open(staging / "all.jsonl", encoding="utf-8") as rows, \
            open(staging / "train.jsonl", "w", encoding="utf-8") as train, \
            open(staging / "eval.jsonl", "w", encoding="utf-8") as held, \
            open(staging / "test.jsonl", "w", encoding="utf-8") as tested:
        for i, line in enumerate(rows):
            if i in valid:
                held.write(line)
            elif i in test:
                tested.write(line)
            else:
                train.write(line)
                digest.update(line.encode())
        own = report.rows_kept - len(valid) - len(test)
        general = general_rows(own, cfg.mix_general_data, cfg.seed)
        for row in general:
            line = json.dumps(row, ensure_ascii=False) + "\n"
            train.write(line)
            digest.update(line.encode())
    (staging / "all.jsonl").unlink()
    counts = {"train": own + len(general), "eval": len(valid)}
    test_rows, test_source = len(test), (report.source if test else "")
    if cfg.test_dataset.strip():  # a separate test set: read (with the same token) and kept beside the rest
        test_report, test_stream = open_dataset(cfg.test_dataset, token=token, limit=limits.rows_cap())
        keep_within_limits(test_stream, staging / "test.jsonl", test_report, log)
        check_usable(test_report)
        test_rows, test_source = test_report.rows_kept, test_report.source
        log(f"test set: {test_report.summary()}")
    if general:
        log(f"mixed in {len(general)} general rows (example:general) with {own} of yours")

    info = {"model_path": model_path, "data": report.summary(), "train_rows": counts["train"],
            "eval_rows": counts["eval"], "probe": probe(tokenizer, cfg), "general_rows": len(general),
            "test_rows": test_rows, "test_source": test_source, "train_sha256": digest.hexdigest(),
            "split": {"seed": cfg.seed, "validation": len(valid), "test": test_rows, "train": counts["train"]}}
    for name, count in counts.items():
        if count and cfg.method == "sft":  # Arrow files, written in place; named, since the trainer's map() caches beside them
            ds = tokenize(tokenizer, staging / f"{name}.jsonl", cfg, staging / name)
            info[f"{name}_files"] = [str(Path(f["filename"]).relative_to(staging)) for f in ds.cache_files]
    (staging / "prepared.json").write_text(json.dumps(info, indent=1))
    os.replace(staging, final)  # all or nothing: a half-prepared run is prepared again
    log(f"prepared on CPU: {counts['train']} training and {counts['eval']} validation "
        f"{ {'sft': 'examples tokenized', 'grpo': 'prompts'}.get(cfg.method, 'preference rows')}, {test_rows} test rows "
        "kept apart")
    return info


def keep_within_limits(stream, path: Path, report, log) -> None:
    """Write the stream's rows to `path` as JSON lines, within a shared app's limits: at most FTSPACE_MAX_ROWS rows
    are read (the stream stops there, said in the log) and at most FTSPACE_MAX_DATASET_MB written (refused beyond:
    rows that large are not a Hub dataset's metadata's fault)."""
    from ftspace import limits
    from ftspace.errors import DataError

    cap, budget = limits.rows_cap(), limits.limit("dataset_mb")
    written = 0
    with open(path, "w", encoding="utf-8") as fh:
        for row in stream:
            line = json.dumps(row, ensure_ascii=False) + "\n"
            written += len(line.encode())
            if budget is not None and written > budget * 1e6:
                raise DataError(limits.refusal("dataset_mb", f"{report.source}: the rows read so far",
                                               round(written / 1e6)))
            fh.write(line)
    if cap is not None and report.rows_read >= cap:
        log(f"{report.source}: read its first {cap} rows only, this app's limit (FTSPACE_MAX_ROWS; the app's owner "
            "can change it)")


def prepare_in_place(run_dir: str, token: str | None = None) -> dict:
    """`prepare` by path, for ftspace.offload (its output goes to the run's log)."""
    from ftspace.engine.distributed import log

    return prepare(Run(Path(run_dir)), token, log)


def tokenize(tokenizer, rows_path: Path, cfg, folder: Path):
    """The converted rows in `rows_path` (JSONL) tokenized with response masks, written to Arrow files in
    `folder` in batches (datasets' generator builder) and memory-mapped from there: a dataset of any size,
    in bounded memory. (Not copied again with save_to_disk: reading a dataset back to copy it maps every
    page of it into the process.)"""
    import uuid

    from datasets import Dataset, Features, List, Value
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()  # our own log line says what was prepared
    features = Features({"input_ids": List(Value("int32")), "assistant_masks": List(Value("int8"))})
    return Dataset.from_generator(_tokenized, features=features, cache_dir=str(folder), fingerprint=uuid.uuid4().hex,
                                  gen_kwargs={"path": str(rows_path), "tokenizer": tokenizer,
                                              "responses_only": cfg.train_on_responses_only,
                                              "max_length": cfg.max_seq_length, "stride": cfg.text_stride})


def open_tokenized(folder: Path, files: list[str]):
    """The dataset `tokenize` wrote: its Arrow `files` (relative to `folder`), memory-mapped, in order."""
    from datasets import Dataset, concatenate_datasets

    return concatenate_datasets([Dataset.from_file(str(folder / f)) for f in files])


def _tokenized(path, tokenizer, responses_only, max_length, stride=0):
    from ftspace.data.tokenize import encode

    with open(path, encoding="utf-8") as fh:
        for line in fh:
            yield from encode(tokenizer, json.loads(line), responses_only, max_length, stride)


def preference_texts(tokenizer, example: dict) -> dict:
    """A canonical preference row as the prompt / chosen / rejected strings TRL's DPO and ORPO trainers take,
    rendered through the model's chat template (tools folded in where the template has no place for them),
    so the reply is scored exactly where chat will generate it."""
    from ftspace.data.tokenize import fold_tools, for_template, render, supports_tools

    def conversation(reply: str):
        rows = {"messages": example["prompt"] + (example[reply] if reply else []), "tools": example.get("tools")}
        if supports_tools(tokenizer):
            return for_template(tokenizer, rows["messages"]), rows["tools"]
        return for_template(tokenizer, fold_tools(rows)), None

    messages, tools = conversation("")
    prompt = render(tokenizer, messages, tools, add_generation_prompt=True)
    out = {"prompt": prompt}
    for reply in ("chosen", "rejected"):
        messages, tools = conversation(reply)
        full = render(tokenizer, messages, tools)
        completion = full[len(prompt):] if full.startswith(prompt) else full
        out[reply] = completion.rstrip("\n")  # the template's end-of-turn last, so TRL adds no second EOS
    return out


def load_preference(run: Run, tokenizer):
    """(train, eval or None) preference datasets of prompt / chosen / rejected strings from the prepared rows."""
    from datasets import Dataset

    info, folder = read_prepared(run), prepared_dir(run)

    def part(name: str):
        if not info[f"{name}_rows"]:
            return None
        with open(folder / f"{name}.jsonl", encoding="utf-8") as fh:
            return Dataset.from_list([preference_texts(tokenizer, json.loads(line)) for line in fh])

    return part("train"), part("eval")


def load_prompts(run: Run, tokenizer):
    """The GRPO training dataset from the prepared rows: "prompt" (rendered text), "answer" (the reference, "" for
    none) and "tools" (JSON text, "" for none), the columns the rewards read, and "prompt_shown" (the samples')."""
    from datasets import Dataset

    from ftspace.data.messages import last_user_text
    from ftspace.data.tokenize import prompt_text

    with open(prepared_dir(run) / "train.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    return Dataset.from_list([{"prompt": prompt_text(tokenizer, row), "answer": row.get("answer") or "",
                               "tools": json.dumps(row["tools"]) if row.get("tools") else "",
                               "prompt_shown": last_user_text(row["prompt"])} for row in rows])


def probe(tokenizer, cfg) -> list[int]:
    from ftspace.data.tokenize import tokenize_example

    return list(tokenize_example(tokenizer, PROBE, cfg.train_on_responses_only, cfg.max_seq_length)["input_ids"])


def load_prepared(run: Run, tokenizer, cfg, log=print):
    """(train, eval or None) datasets for the trainer: the prepared ones when the trainer's tokenizer
    agrees with the one that made them, else the prepared rows tokenized again with it."""
    info, folder = read_prepared(run), prepared_dir(run)
    same = probe(tokenizer, cfg) == info["probe"]
    if not same:
        log("the trainer's tokenizer differs from the one used to prepare the data: tokenizing again")

    def part(name: str):
        if not info[f"{name}_rows"]:
            return None
        if same and f"{name}_files" in info:
            return open_tokenized(folder, info[f"{name}_files"])
        if same:  # prepared by an earlier version (save_to_disk)
            from datasets import load_from_disk

            return load_from_disk(str(folder / name))
        return tokenize(tokenizer, folder / f"{name}.jsonl", cfg, run.path / ".retokenized" / name)

    return part("train"), part("eval")
