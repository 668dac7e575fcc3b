"""What a run will take, before it starts: the one estimate behind `ftspace estimate` and the Train tab.

Rows are counted by streaming the dataset (nothing held), the validation rows taken out the way the run
will take them, then parameters, memory and steps come from the model's config (no weights are
loaded), and time from the step time a previous run of the same model and shape measured.
JSON in and out, so ftspace.offload can run it in a helper process on ZeroGPU.
"""

from __future__ import annotations

COUNT_ROWS = 200_000  # rows counted at most (a few seconds from a file; a huge Hub dataset says "at least")


def plan(config: dict, token: str | None = None) -> dict:
    """{"rows", "rows_capped" (True: there are more, counted up to COUNT_ROWS), "train_rows", "parameters",
    "trainable_parameters", "trainable_percent", "memory_gb", "steps", "examples_per_step", "seconds" (only
    once a step time has been measured)}."""
    from ftspace import runs
    from ftspace.config import RunConfig
    from ftspace.data import check_usable, open_dataset, training_rows
    from ftspace.models import estimate

    cfg = RunConfig.from_dict(config)
    report, stream = open_dataset(cfg.dataset, dataset_format=cfg.dataset_format, prompt_column=cfg.prompt_column,
                                  response_column=cfg.response_column, config=cfg.dataset_config,
                                  split=cfg.dataset_split, limit=COUNT_ROWS, token=token, method=cfg.method)
    text_chars, sample, sampled = [], [], 0  # plain text trains on windows of it: lengths, and a start to measure
    for row in stream:
        if "text" in row:
            text_chars.append(len(row["text"]))
            if sampled < SAMPLE_CHARS:
                sample.append(row["text"])
                sampled += len(row["text"])
    check_usable(report)
    rows = report.rows_kept
    train_rows = training_rows(rows, cfg)
    windows = None
    if text_chars:  # documents become windows of max_seq_length tokens: count those (approximately)
        windows = _windows(text_chars, "\n".join(sample)[:SAMPLE_CHARS], cfg, token)
        train_rows = max(1, round(windows * train_rows / rows))
    out = estimate(cfg, train_rows, seconds_per_step=runs.measured_step_seconds(cfg), token=token)
    capped = report.rows_read >= COUNT_ROWS
    return {"rows": rows, "rows_capped": capped, "train_rows": train_rows, **out,
            "steps_exact": cfg.max_steps > 0 or not (capped or windows), "text_windows": windows,
            "epoch_based": cfg.max_steps <= 0}


SAMPLE_CHARS = 200_000  # text tokenized to learn the tokenizer's characters per token


def _windows(text_chars: list[int], sample: str, cfg, token: str | None) -> int:
    """About how many windows of max_seq_length tokens the documents make: their lengths in characters over
    the characters per token measured on `sample`, their first characters (4 where the tokenizer is not at hand)."""
    import math

    chars_per_token = 4.0
    try:
        from ftspace.data.inspection import _tokenizer

        tokenizer = _tokenizer(cfg.model_name, token)
        chars_per_token = max(1.0, len(sample) / max(1, len(tokenizer(sample, add_special_tokens=False)["input_ids"])))
    except Exception:  # no tokenizer here (an offline Hub model): the usual 4 characters per token
        pass
    step = max(1, cfg.max_seq_length - cfg.text_stride)
    return sum(max(1, math.ceil(max(0, n / chars_per_token + 1 - cfg.text_stride) / step)) for n in text_chars)


def describe(est: dict) -> str:
    """One paragraph (Markdown) for people: the Train tab shows it, the CLI prints it above the JSON."""
    time_line = (f"about **{est['seconds'] / 60:.1f} min** at the step time measured on a previous run of this "
                 "model" if "seconds" in est else "time: shown once a step of this model has been measured")
    at_least = "at least " if est.get("rows_capped") else ("about " if est.get("text_windows") else "")
    unit = "training windows of text" if est.get("text_windows") else "training rows"
    return (f"{at_least}**{est['train_rows']}** {unit}; **{est['parameters'] / 1e6:,.1f} M** parameters, "
            f"**{est['trainable_parameters'] / 1e6:,.2f} M** trainable ({est['trainable_percent']}%), about "
            f"**{est['memory_gb']} GB** of memory, {'' if est.get('steps_exact', True) else 'at least '}**{est['steps']}** steps of {est['examples_per_step']} "
            f"examples; {time_line}." + few_steps(est))


FEW_STEPS = 20  # fewer optimizer steps than this rarely teach anything new (measured: bench/RESULTS.md section 7)


def few_steps(est: dict) -> str:
    """A warning when an epoch-based run makes only a handful of optimizer steps (a small upload with the
    balanced or thorough preset: 40 rows make 10 and 8 steps, and the fact was not learned)."""
    if not est.get("epoch_based") or est["steps"] >= FEW_STEPS:
        return ""
    return (f" **Only {est['steps']} optimizer steps**: a small dataset learns little in so few; raise "
            "num_train_epochs or set max_steps (the quick demo preset makes 30).")
