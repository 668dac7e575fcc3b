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
    from ftspace.data import scan, training_rows
    from ftspace.models import estimate

    cfg = RunConfig.from_dict(config)
    report = scan(cfg.dataset, dataset_format=cfg.dataset_format, prompt_column=cfg.prompt_column,
                  response_column=cfg.response_column, config=cfg.dataset_config, split=cfg.dataset_split,
                  limit=COUNT_ROWS, token=token)
    rows = report.rows_kept
    train_rows = training_rows(rows, cfg)
    out = estimate(cfg, train_rows, seconds_per_step=runs.measured_step_seconds(cfg), token=token)
    capped = report.rows_read >= COUNT_ROWS
    return {"rows": rows, "rows_capped": capped, "train_rows": train_rows, **out,
            "steps_exact": cfg.max_steps > 0 or not capped}


def describe(est: dict) -> str:
    """One paragraph (Markdown) for people: the Train tab shows it, the CLI prints it above the JSON."""
    time_line = (f"about **{est['seconds'] / 60:.1f} min** at the step time measured on a previous run of this "
                 "model" if "seconds" in est else "time: shown once a step of this model has been measured")
    at_least = "at least " if est.get("rows_capped") else ""
    return (f"{at_least}**{est['train_rows']}** training rows; **{est['parameters'] / 1e6:,.1f} M** parameters, "
            f"**{est['trainable_parameters'] / 1e6:,.2f} M** trainable ({est['trainable_percent']}%), about "
            f"**{est['memory_gb']} GB** of memory, {'' if est.get('steps_exact', True) else 'at least '}**{est['steps']}** steps of {est['examples_per_step']} "
            f"examples; {time_line}.")
