"""What a run will take, before it starts: the one estimate behind `ftspace estimate` and the Train tab.

Rows are counted by streaming the dataset (nothing held), the validation rows taken out the way the run
will take them, then parameters, memory and steps come from the model's config (no weights are
loaded), and time from the step time a previous run of the same model and shape measured, else from the
hardware's catalogued training speed for a model of this size.
JSON in and out, so ftspace.offload can run it in a helper process on ZeroGPU.
"""

from __future__ import annotations

COUNT_ROWS = 200_000  # rows counted at most (a few seconds from a file; a huge Hub dataset says "at least")


def plan(config: dict, token: str | None = None, owner: str | None = None) -> dict:
    """{"rows", "rows_capped" (True: there are more, counted up to COUNT_ROWS), "train_rows", "parameters",
    "trainable_parameters", "trainable_percent", "memory_gb", "steps", "examples_per_step", "seconds", "time_source"
    ("measured": a previous run of this model and batch shape; "catalogued": the hardware's catalogued speed)}."""
    from ftspace import runs
    from ftspace.config import RunConfig
    from ftspace.data import check_usable, open_dataset, training_rows
    from ftspace.models import estimate

    cfg = RunConfig.from_dict(config)
    report, stream = open_dataset(cfg.dataset, dataset_format=cfg.dataset_format, prompt_column=cfg.prompt_column,
                                  response_column=cfg.response_column, config=cfg.dataset_config,
                                  split=cfg.dataset_split, limit=COUNT_ROWS, token=token, method=cfg.method)
    text_chars, sample, sampled = [], [], 0  # plain text trains on windows of it: lengths, and a start to measure
    row_chars = []  # characters of the first rows: the tokens a step trains on, for a time before any is measured
    for row in stream:
        if len(row_chars) < LENGTH_ROWS:
            row_chars.append(_chars(row))
        if "text" in row:
            text_chars.append(len(row["text"]))
            if sampled < SAMPLE_CHARS:
                sample.append(row["text"])
                sampled += len(row["text"])
    check_usable(report)
    rows = report.rows_kept
    train_rows = training_rows(rows, cfg)
    if cfg.method == "grpo":  # each prompt is answered num_generations times: each reply is one example of a step
        train_rows *= cfg.num_generations
    windows = None
    if text_chars:  # documents become windows of max_seq_length tokens: count those (approximately)
        windows = _windows(text_chars, "\n".join(sample)[:SAMPLE_CHARS], cfg, token)
        train_rows = max(1, round(windows * train_rows / rows))
    measured = runs.measured_step_seconds(cfg, owner)  # owner: only that caller's runs (a shared app)
    out = estimate(cfg, train_rows, seconds_per_step=measured, token=token)
    # tokens the run trains on: what sizes a catalogued time (here, or on Hugging Face Jobs hardware)
    tokens = cfg.max_seq_length if windows else min(cfg.max_seq_length, sum(row_chars) / max(1, len(row_chars))
                                                     / CHARS_PER_TOKEN + TEMPLATE_TOKENS)
    if cfg.method == "grpo":  # the reply it writes (its reference answer is not trained on), at its longest
        tokens += cfg.max_completion_length
    out["train_tokens"] = round(out["steps"] * out["examples_per_step"] * tokens)
    if measured:
        out["time_source"] = "measured"
    else:  # over the catalogued speed of this hardware for a model of this size
        per_s = catalogued_tokens_per_s(out["parameters"], compute_dtype=cfg.compute_dtype)
        out["seconds"] = round(out["train_tokens"] / per_s + STARTUP_S, 1)
        out["time_source"] = "catalogued"
        out["tokens_per_s"] = round(per_s)
    capped = report.rows_read >= COUNT_ROWS
    return {"rows": rows, "rows_capped": capped, "train_rows": train_rows, **out,
            "steps_exact": cfg.max_steps > 0 or not (capped or windows), "text_windows": windows,
            "epoch_based": cfg.max_steps <= 0, "small_upload": rows < SMALL_UPLOAD_ROWS and cfg.method != "grpo"}


SAMPLE_CHARS = 200_000  # text tokenized to learn the tokenizer's characters per token
LENGTH_ROWS = 2000  # rows whose length sizes the catalogued time
CHARS_PER_TOKEN = 4.0  # English text in the usual BPE vocabularies
TEMPLATE_TOKENS = 16  # the chat template's role markers around a short exchange
STARTUP_S = 30.0  # the worker's start: import Unsloth, load the model (about 30 s for the bundled model on 2 cores)

# Training tokens per second for a model of 1 B parameters, by hardware (scaled by 1 / parameters, and on a CPU by
# its cores). CPU: measured, the bundled 135 M model trained at 234 tokens/s with Unsloth on 2 cores (bench/RESULTS.md
# section 1) -> 15.8 at 1 B per core, where the CPU computes in bfloat16; in float32 (a CPU without bfloat16 units)
# the demo's 9,075 tokens took 106 s of training on an AVX2-only 2-core EPYC (section 9) -> 5.8. GPUs: not measured
# by this project (no GPU here); rough floors for Unsloth LoRA in 16-bit: a T4-class CUDA GPU, and a ZeroGPU slice
# of an H200. Any run's own step time replaces them.
CATALOGUE_TOKENS_PER_S_1B = {"cpu_per_core": 15.8, "cpu_per_core_float32": 5.8, "cuda": 2500.0, "zerogpu": 10000.0}


def catalogued_tokens_per_s(parameters: int, hw: dict | None = None, compute_dtype: str = "auto") -> float:
    """For this machine's hardware, or `hw` ({"kind": "cpu" | "cuda" | "zerogpu", "cores": n}); on a CPU, in the
    precision a run of `compute_dtype` computes in there."""
    from ftspace.models import cpu_computes_bf16, hardware

    hw, billions = hw or hardware(), max(parameters / 1e9, 0.01)
    if hw["kind"] == "cpu":
        per_core = "cpu_per_core" if cpu_computes_bf16(compute_dtype) else "cpu_per_core_float32"
        return CATALOGUE_TOKENS_PER_S_1B[per_core] * (hw.get("cores") or 1) / billions
    return CATALOGUE_TOKENS_PER_S_1B[hw["kind"]] / billions


def _chars(value) -> int:
    """Characters of text in a row (every string in it, nested)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_chars(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_chars(v) for v in value)
    return 0


def _windows(text_chars: list[int], sample: str, cfg, token: str | None) -> int:
    """About how many windows of max_seq_length tokens the documents make: their lengths in characters over
    the characters per token measured on `sample`, their first characters (4 where the tokenizer is not at hand)."""
    import math

    chars_per_token = 4.0
    try:
        from ftspace.data.inspection import tokenizer_for

        tokenizer = tokenizer_for(cfg.model_name, token)
        chars_per_token = max(1.0, len(sample) / max(1, len(tokenizer(sample, add_special_tokens=False)["input_ids"])))
    except Exception:  # no tokenizer here (an offline Hub model): the usual 4 characters per token
        pass
    step = max(1, cfg.max_seq_length - cfg.text_stride)
    return sum(max(1, math.ceil(max(0, n / chars_per_token + 1 - cfg.text_stride) / step)) for n in text_chars)


def describe(est: dict, time_line: str | None = None) -> str:
    """One paragraph (Markdown) for people: the Train tab shows it, the CLI prints it above the JSON. `time_line`
    replaces the time on this machine (a run on Hugging Face Jobs: its time and cost there)."""
    if time_line:
        pass
    elif "seconds" not in est:
        time_line = "time: shown once a step of this model has been measured"
    elif est.get("time_source") == "catalogued":
        time_line = (f"about **{est['seconds'] / 60:.1f} min** on this hardware (a rough figure from the model's size "
                     f"and a catalogued speed of {est['tokens_per_s']:,} tokens/s; the first run's own steps "
                     "refine it)")
    else:
        time_line = f"about **{est['seconds'] / 60:.1f} min** at the step time measured on a previous run of this model"
    at_least = "at least " if est.get("rows_capped") else ("about " if est.get("text_windows") else "")
    unit = "training windows of text" if est.get("text_windows") else "training rows"
    return (f"{at_least}**{est['train_rows']}** {unit}; **{est['parameters'] / 1e6:,.1f} M** parameters, "
            f"**{est['trainable_parameters'] / 1e6:,.2f} M** trainable ({est['trainable_percent']}%), about "
            f"**{est['memory_gb']} GB** of memory, {'' if est.get('steps_exact', True) else 'at least '}**{est['steps']}** steps of {est['examples_per_step']} "
            f"examples; {time_line}." + few_steps(est) + small_upload(est))


FEW_STEPS = 20  # fewer optimizer steps than this rarely teach anything new (measured: bench/RESULTS.md section 7)


SMALL_UPLOAD_ROWS = 100  # below this many rows, the estimate says what such runs cost in general answers


def small_upload(est: dict) -> str:
    """Said before a small upload trains: such runs turn some general answers wrong (measured on three 40-row
    uploads of different shapes: bench/RESULTS.md, "What small uploads cost in general answers"), while the net
    score can rise; the evaluation names them."""
    if not est.get("small_upload"):
        return ""
    return (f" **A small upload ({est['rows']} rows) changes some general answers**, a few of them for the worse, "
            "even where the general score rises: evaluate the run (Evaluate tab, `ftspace eval`) and read the "
            "probe's answers it lost before you publish.")


def few_steps(est: dict) -> str:
    """A warning when an epoch-based run makes only a handful of optimizer steps (a small upload with the
    balanced or thorough preset: 40 rows make 10 and 8 steps, and the fact was not learned)."""
    if not est.get("epoch_based") or est["steps"] >= FEW_STEPS:
        return ""
    return (f" **Only {est['steps']} optimizer steps**: a small dataset learns little in so few; raise "
            "num_train_epochs or set max_steps (the quick demo preset makes 30).")
