"""What a preset teaches and what it breaks: the quick-demo preset as it was (no general rows) and as it is
(mix_general_data 0.5), and the balanced and thorough presets, on a 40-row upload about one invented fact and
nothing else, with the real default model. Each round trains every contender with the same seed and scores it
with `ftspace eval` on held-out paraphrases and the general probe; rounds use different seeds, so the spread is
the seed's.

    python bench/bench_forgetting.py [--rounds 3] [--group forgetting | forgetting_presets]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import ROOT, save, spread  # noqa: E402
from bench.common import ftspace_cli as cli  # noqa: E402
from ftspace.config import PRESETS  # noqa: E402

DATA, TEST = ROOT / "tests/data/one_fact.jsonl", ROOT / "tests/data/one_fact_test.jsonl"
GROUPS = {  # each group is one result file: bench/results/<name>.json
    "forgetting": {"quick demo before (no general rows)": ("quick demo", {"mix_general_data": 0.0}),
                   "quick demo now": ("quick demo", {})},
    "forgetting_presets": {"balanced": ("balanced", {}), "thorough": ("thorough", {})},
}
SEEDS = [3407, 1, 2, 3, 4]


def one(name: str, preset: str, changes: dict, seed: int, env: dict) -> dict:
    values = {**PRESETS[preset], **changes, "seed": seed}
    sets = [arg for k, v in values.items() for arg in ("--set", f"{k}={v}")]
    run_dir = cli("train", "--dataset", str(DATA), "--test-dataset", str(TEST), "--quiet", *sets,
                  env=env).strip().splitlines()[-1]
    card = json.loads(cli("eval", run_dir, "--json", "--max-new-tokens", "48", "--quiet", env=env))
    f = card["forgetting"]
    learned = sum("silver otter" in e["tuned"].lower() for e in card["examples"])
    print(f"{name} seed {seed}: fact in {learned}/{len(card['examples'])} held-out answers, token F1 "
          f"{card['base']['token_f1']:.2f} -> {card['tuned']['token_f1']:.2f}, probe {f['base']:.3f} -> "
          f"{f['tuned']:.3f} ({f['change']:+.3f})", flush=True)
    lost = [p["question"] + " -> " + p["tuned"][:60] for p in card["probe"] if p["base_right"] and not p["tuned_right"]]
    return {"seed": seed, "steps": json.loads((Path(run_dir) / "status.json").read_text()).get("step"), "learned": learned, "held_out": len(card["examples"]), "f1_base": card["base"]["token_f1"],
            "f1_tuned": card["tuned"]["token_f1"], "probe_base": f["base"], "probe_tuned": f["tuned"],
            "probe_change": f["change"], "warned": f["warning"] is not None, "lost_examples": lost[:6]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--group", choices=list(GROUPS), default="forgetting",
                        help="the quick-demo preset before/after, or the balanced and thorough presets")
    args = parser.parse_args()
    CONTENDERS = GROUPS[args.group]
    results = {name: [] for name in CONTENDERS}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "FTSPACE_RUNS": tmp}
        for seed in SEEDS[:args.rounds]:  # interleaved: both contenders each round
            for name, (preset, changes) in CONTENDERS.items():
                results[name].append(one(name, preset, changes, seed, env))
    summary = {name: {"probe_change": spread([r["probe_change"] for r in rows]),
                      "f1_tuned": spread([r["f1_tuned"] for r in rows]),
                      "learned": spread([r["learned"] for r in rows]),
                      "warned": sum(r["warned"] for r in rows), "steps": spread([r["steps"] or 0 for r in rows])} for name, rows in results.items()}
    save(args.group, {"setup": {"data": "40 rows about one invented fact (tests/data/one_fact.jsonl)",
                                  "test": "6 held-out paraphrases (tests/data/one_fact_test.jsonl)",
                                  "presets": {name: {**PRESETS[preset], **changes} for name, (preset, changes) in CONTENDERS.items()},
                                  "probe_questions": 48,
                                  "warn_threshold": 0.10, "rounds": args.rounds},
                        "summary": summary, "rounds": results})


if __name__ == "__main__":
    main()
