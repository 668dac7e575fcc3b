"""Evaluate a run: the tuned and the base model answer the same held-out test prompts and a general-ability
probe; the scorecard puts them side by side (`ftspace eval`, the Evaluate tab, the model card).

One model is loaded (the base with the run's adapter, or a checkpoint's) and answers every prompt twice,
adapter on and off: greedy, batched, left-padded. Test loss is computed on the reference replies' tokens
(the same response mask training uses). Time on CPU is bounded by a cap on test rows (`max_rows`).

Parts: `running` (load the model, answer, compute losses: `evaluate`, `stream`), `scoring` (what is scored and
how), `showing` (a scorecard's table and summary, saved ones read back), `metrics` (the task metrics). The names
below are the package's interface.
"""

from ftspace.evaluation.running import (  # noqa: F401
    DEFAULT_MAX_ROWS, PROBE_NEW_TOKENS, Cancelled, EvalOptions, Evaluator, base_for, compare, compare_preflight,
    evaluate, preflight, stream, test_rows)
from ftspace.evaluation.scoring import (  # noqa: F401
    GENERAL_DROP_WARN, LOST_WARN, PRIMARY, PROBE_PATH, label_of, per_example, read_probe, scorecard, target)
from ftspace.evaluation.showing import (  # noqa: F401
    METRIC_NAMES, TRADEOFF_COLUMNS, comparison, saved, summary, table_rows, tradeoff)
