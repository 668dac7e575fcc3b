"""Benchmark 14: GRPO on a CPU, the bundled model learning single-digit arithmetic answered in a few words (the
settings of tests/test_grpo.py): over several seeds, the mean reward of the first and the last steps, its gain, and the wall
time per step (generation of the replies included), with the spread across seeds.

Each seed is one run through the worker (`ftspace.targets.local.start`), as the app and the CLI start them."""

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import save, spread  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--steps", type=int, default=24)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ftspace-bench-grpo-"))
    os.environ.update(FTSPACE_RUNS=str(tmp / "runs"), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    from ftspace.config import RunConfig
    from ftspace.targets import local
    from tests.test_grpo import ARITHMETIC, FIRST_LAST

    per_seed = {}
    for seed in args.seeds:
        cfg = RunConfig(**{**ARITHMETIC, "seed": seed, "max_steps": args.steps, "test_size": 0})
        run, _ = local.start(cfg)
        st = run.wait(timeout=3600)
        if st["status"] != "completed":
            raise SystemExit(f"seed {seed}: {st['status']}: {st.get('error')}")
        steps = [e for e in run.events()[0] if "loss" in e]
        rewards = [e["reward"] for e in steps]
        times = [b["elapsed_s"] - a["elapsed_s"] for a, b in zip(steps, steps[1:])]
        first, last = statistics.mean(rewards[:FIRST_LAST]), statistics.mean(rewards[-FIRST_LAST:])
        per_seed[seed] = {"first": round(first, 3), "last": round(last, 3), "gain": round(last - first, 3),
                          "step_s": round(statistics.median(times), 2), "rewards": [round(r, 3) for r in rewards],
                          "short_last": round(statistics.mean(e["reward_length"] for e in steps[-FIRST_LAST:]), 3),
                          "right_last": round(statistics.mean(e["reward_correct_answer"] for e in steps[-FIRST_LAST:]),
                                              3),
                          "compute_dtype": st.get("compute_dtype")}
        print(seed, per_seed[seed]["first"], "->", per_seed[seed]["last"], f"{per_seed[seed]['step_s']} s/step",
              flush=True)
    values = list(per_seed.values())
    save("grpo", {
        "setup": {"model": "bundled SmolLM2-135M-Instruct", "data": "example:arithmetic", "steps": args.steps,
                  "compared_steps": FIRST_LAST, "rewards": ARITHMETIC["rewards"],
                  "num_generations": ARITHMETIC["num_generations"],
                  "prompts_per_step": ARITHMETIC["per_device_train_batch_size"] // ARITHMETIC["num_generations"],
                  "max_completion_length": ARITHMETIC["max_completion_length"],
                  "learning_rate": ARITHMETIC["learning_rate"], "seeds": args.seeds},
        "per_seed": per_seed,
        "first": spread([v["first"] for v in values]), "last": spread([v["last"] for v in values]),
        "gain": spread([v["gain"] for v in values]), "step_s": spread([v["step_s"] for v in values])})


if __name__ == "__main__":
    main()
