"""What small uploads cost in general answers, question by question (issue 31): the quick-demo preset on three small
uploads of different topics and shapes, each over several seeds, with the real default model. Every run is scored
by `ftspace eval` twice: on the bundled 48-question general probe, and on 40 other short general questions the
probe does not hold (bench/data/general_heldout.jsonl: sums, capitals, units, facts, instructions), so the probe is
checked against questions it never saw. For each question: right before tuning, right after.

The question it answers: does the probe's change (tuned share right minus base share right) see what a run loses?
A net change adds the answers lost to those gained: a run that loses three and gains four reads +1.

    python bench/bench_uploads.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import ROOT, save, spread  # noqa: E402
from bench.common import ftspace_cli as cli  # noqa: E402

DATA = ROOT / "bench" / "data"
HELD_OUT = DATA / "general_heldout.jsonl"
UPLOADS = {  # name: (training rows, held-out test rows, what the shape is, key phrases a learned answer holds)
    "one fact (question/answer pairs)": (ROOT / "tests/data/one_fact.jsonl", ROOT / "tests/data/one_fact_test.jsonl",
                                         "40 question/answer rows, one invented fact in many phrasings",
                                         ["silver otter"]),
    "company FAQ (conversations with a system prompt)": (
        DATA / "company_faq.jsonl", DATA / "company_faq_test.jsonl",
        "40 conversations (system, user, assistant): ten invented facts of one company, four phrasings each",
        ["1987", "harrowgate vale", "amber fog", "45 days", "kettle club", "lemon verbena"]),
    "sentiment labels (instruction/input/output)": (
        DATA / "sentiment.jsonl", DATA / "sentiment_test.jsonl",
        "40 alpaca rows: a review in, one word out (positive or negative)", ["positive", "negative"]),
}
CONTROL = {  # the noise floor: the same preset on the bundled general rows, which teach nothing new
    "control: the bundled general rows (example:general)": (
        "example:general", ROOT / "tests/data/one_fact_test.jsonl", "the 80 hand-written general rows mixed into "
        "every quick-demo run, alone: what tuning with nothing new to learn changes", ["silver otter"]),
}
SEEDS = [3407, 1, 2, 3, 4]


def learned(example: dict, keys: list[str]) -> bool:
    """The held-out answer says what the upload taught: the key phrase its reference holds, and no other key."""
    reference, tuned = example["reference"].lower(), example["tuned"].lower()
    want = [k for k in keys if k in reference]
    return bool(want) and want[0] in tuned and not any(k in tuned for k in keys if k not in want)


def per_question(card: dict) -> list[dict]:
    return [{"question": p["question"], "base": bool(p["base_right"]), "tuned": bool(p["tuned_right"]),
             "tuned_answer": p["tuned"][:80]} for p in card["probe"]]


def counts(questions: list[dict]) -> dict:
    n = len(questions)
    lost = sum(q["base"] and not q["tuned"] for q in questions)
    gained = sum(q["tuned"] and not q["base"] for q in questions)
    return {"questions": n, "base_right": sum(q["base"] for q in questions), "lost": lost, "gained": gained,
            "net_change": round((gained - lost) / n, 3)}


def one(name: str, seed: int, env: dict, sets: list[str]) -> dict:
    data, test, _, keys = {**UPLOADS, **CONTROL}[name]
    run_dir = cli("train", "--preset", "quick demo", "--dataset", str(data), "--test-dataset", str(test),
                  "--seed", str(seed), "--quiet", *[a for kv in sets for a in ("--set", kv)],
                  env=env).strip().splitlines()[-1]
    scored = {}
    for probe, extra in (("probe", []), ("held_out", ["--probe", str(HELD_OUT)])):
        scored[probe] = json.loads(cli("eval", run_dir, "--json", "--max-new-tokens", "48", "--quiet", *extra,
                                       env=env))
    card = scored["probe"]
    questions = {probe: per_question(c) for probe, c in scored.items()}
    row = {"seed": seed, "learned": sum(learned(e, keys) for e in card["examples"]),
           "held_out_rows": len(card["examples"]), "f1_base": card["base"].get("token_f1"),
           "f1_tuned": card["tuned"].get("token_f1"), "probe": counts(questions["probe"]),
           "held_out": counts(questions["held_out"]), "warned": card["forgetting"]["warning"] is not None,
           "questions": questions}
    print(f"{name} seed {seed}: learned {row['learned']}/{row['held_out_rows']}; probe lost {row['probe']['lost']} "
          f"gained {row['probe']['gained']} (net {row['probe']['net_change']:+.3f}); held-out general lost "
          f"{row['held_out']['lost']} gained {row['held_out']['gained']} (net {row['held_out']['net_change']:+.3f})",
          flush=True)
    return row


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", choices=list(UPLOADS) + list(CONTROL), help="one upload (default: all three)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a change to the preset (the result file is named by it)")
    parser.add_argument("--name", default="forgetting_uploads", help="the result's name (bench/out/NAME.json)")
    args = parser.parse_args()
    names = [args.only] if args.only else list(UPLOADS)
    results = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "FTSPACE_RUNS": tmp}
        for seed in SEEDS[:args.seeds]:  # interleaved: every upload each round
            for name in names:
                results[name].append(one(name, seed, env, args.set))
    summary = {}
    for name, rows in results.items():
        lost_where = {}  # question -> how many runs lost it
        for r in rows:
            for probe in ("probe", "held_out"):
                for q in r["questions"][probe]:
                    if q["base"] and not q["tuned"]:
                        lost_where[f"[{probe}] {q['question']}"] = lost_where.get(f"[{probe}] {q['question']}", 0) + 1
        summary[name] = {
            "learned": spread([r["learned"] for r in rows]),
            **{f"{probe}_{k}": spread([r[probe][k] for r in rows]) for probe in ("probe", "held_out")
               for k in ("lost", "gained", "net_change")},
            "warned": sum(r["warned"] for r in rows),
            "lost_most": sorted(lost_where.items(), key=lambda kv: -kv[1])[:8]}
    save(args.name, {
        "setup": {"preset": "quick demo", "changes": args.set, "model": "default (bundled SmolLM2-135M-Instruct)",
                  "uploads": {name: {**UPLOADS, **CONTROL}[name][2] for name in names}, "probe_questions": 48,
                  "held_out_general_questions": 40, "seeds": SEEDS[:args.seeds], "max_new_tokens": 48},
        "summary": summary, "rounds": results})


if __name__ == "__main__":
    main()
