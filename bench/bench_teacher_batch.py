"""Benchmark 11: the bundled teacher's replies one chat at a time against one batched generation of the same chats
(`ChatModel.replies`, what `data synth` / `data raft` use with the bundled teacher), interleaved over --rounds
rounds. Greedy decoding, so both sides write the same text in float32 (in bfloat16 the replies drift apart, as
rounding differs with the batch's shape): the figure compares time for like work."""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ratio, save, spread, verdict  # noqa: E402

CHATS = [
    "Write two quiz questions with short answers about rivers, as JSON.",
    "Read this passage and ask one question it answers: Bees dance to show where flowers are.",
    "Answer from the passage, quoting it: Volcanoes form where plates meet. Question: where do volcanoes form?",
    "Write one question and answer about the planets of the solar system.",
    "Give a short question and answer about the boiling point of water.",
    "Ask a question about the Danube and answer it in one sentence.",
    "Write a trivia question about oceans with its answer.",
    "Write a question about Shakespeare and answer it briefly.",
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=160)
    args = parser.parse_args()
    import torch

    from ftspace.chat import load_cached, resolve_source
    from ftspace.config import GenerationSettings
    from ftspace.data.create.teacher import local_batch

    from ftspace.models import compute_placement

    batch = local_batch()
    dtype = str(compute_placement()[1]).replace("torch.", "")
    model = load_cached(resolve_source(("base", "default"), token=None))
    chats = [[{"role": "user", "content": c}] for c in CHATS[:batch]]
    settings = GenerationSettings(max_new_tokens=args.max_tokens, temperature=0.0)
    model.replies(chats[:1], settings)  # warm-up, not timed
    times = {"one_at_a_time": [], "batched": []}
    chars = {}
    for _ in range(args.rounds):
        for mode in times:
            t0 = time.perf_counter()
            texts = ([model.replies([c], settings)[0] for c in chats] if mode == "one_at_a_time"
                     else model.replies(chats, settings))
            times[mode].append(time.perf_counter() - t0)
            chars[mode] = texts
    same = sum(a == b for a, b in zip(chars["one_at_a_time"], chars["batched"]))
    one, many = spread(times["one_at_a_time"]), spread(times["batched"])
    save("teacher_batch", {
        "setup": f"bundled teacher ({model.name.rsplit('/', 1)[-1]}), {batch} chats, greedy, up to {args.max_tokens} "
                 f"new tokens, {dtype}, {torch.get_num_threads()} threads; {args.rounds} rounds, both ways interleaved "
                 "(in float32 both ways write the same replies; bfloat16 rounds differently per batch shape, so "
                 "greedy replies drift apart after a few words)",
        "batch": batch, "one_at_a_time_s": one, "batched_s": many,
        "ratio_batched_over_one_at_a_time": ratio(many["median"], one["median"]), "verdict": verdict(many, one),
        "identical_replies": f"{same} of {len(chats)}",
        "reply_chars": [len(t) for t in chars["batched"]]})


if __name__ == "__main__":
    main()
