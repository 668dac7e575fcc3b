"""Before training, on CPU: the model on local disk, the data read, converted, split and tokenized.

A shared app prepares a run inside the visitor's own request, with the visitor's token, so the process
that trains (a worker without credentials, or a ZeroGPU call) reads only local files and spends its
time training: paid GPU seconds are not spent downloading or tokenizing. A worker started by the CLI
prepares its run itself, with the machine's token. What it leaves in the run folder:

    runs/<id>/prepared/prepared.json   the model folder, data report, split sizes, tokenizer probe
    runs/<id>/prepared/train.jsonl     converted training rows (eval.jsonl: validation rows)
    runs/<id>/prepared/train/, eval/   the same rows tokenized (Arrow), as the trainer takes them
"""

from __future__ import annotations

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
    """Download, convert, split and tokenize once per run (a resumed run reuses it); the summary."""
    done = read_prepared(run)
    if done is not None:
        return done
    from ftspace import models
    from ftspace.data import load_dataset, split

    cfg = run.config()
    model_path = models.resolve_model(cfg.model_name, progress=log, token=token)
    rows, report = load_dataset(cfg.dataset, dataset_format=cfg.dataset_format, prompt_column=cfg.prompt_column,
                                response_column=cfg.response_column, config=cfg.dataset_config,
                                split=cfg.dataset_split, token=token)
    log(report.summary())
    train_rows, eval_rows = split(rows, cfg.validation_size, cfg.seed)

    from transformers import AutoTokenizer

    from ftspace.data.tokenize import set_chat_template

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    set_chat_template(tokenizer, cfg.chat_template)
    final, staging = prepared_dir(run), run.path / ".prepared.incoming"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for name, part in (("train", train_rows), ("eval", eval_rows)):
        with open(staging / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in part)
        if part:
            tokenize(tokenizer, part, cfg).save_to_disk(str(staging / name))
    info = {"model_path": model_path, "data": report.summary(), "train_rows": len(train_rows),
            "eval_rows": len(eval_rows), "probe": probe(tokenizer, cfg)}
    (staging / "prepared.json").write_text(json.dumps(info, indent=1))
    os.replace(staging, final)  # all or nothing: a half-prepared run is prepared again
    log(f"prepared on CPU: {len(train_rows)} training and {len(eval_rows)} validation examples tokenized")
    return info


def prepare_in_place(run_dir: str, token: str | None = None) -> dict:
    """`prepare` by path, for ftspace.offload (its output goes to the run's log)."""
    from ftspace.engine.worker import log

    return prepare(Run(Path(run_dir)), token, log)


def tokenize(tokenizer, rows: list[dict], cfg):
    from datasets import Dataset

    from ftspace.data.tokenize import tokenize_example

    return Dataset.from_list([tokenize_example(tokenizer, ex, cfg.train_on_responses_only, cfg.max_seq_length)
                              for ex in rows])


def probe(tokenizer, cfg) -> list[int]:
    from ftspace.data.tokenize import tokenize_example

    return list(tokenize_example(tokenizer, PROBE, cfg.train_on_responses_only, cfg.max_seq_length)["input_ids"])


def load_prepared(run: Run, tokenizer, cfg, log=print):
    """(train, eval or None) datasets for the trainer: the prepared ones when the trainer's tokenizer
    agrees with the one that made them, else the prepared rows tokenized again with it."""
    from datasets import load_from_disk

    info, folder = read_prepared(run), prepared_dir(run)
    same = probe(tokenizer, cfg) == info["probe"]
    if not same:
        log("the trainer's tokenizer differs from the one used to prepare the data: tokenizing again")

    def part(name: str):
        if not info[f"{name}_rows"]:
            return None
        if same:
            return load_from_disk(str(folder / name))
        with open(folder / f"{name}.jsonl", encoding="utf-8") as fh:
            return tokenize(tokenizer, [json.loads(line) for line in fh], cfg)

    return part("train"), part("eval")
