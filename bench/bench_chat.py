"""Benchmark 5: chat. Time to first token and tokens/s of ftspace's streaming path (ChatModel.stream,
adapter loaded) against raw `model.generate` on the same model, prompt and settings. Target >= 0.9x."""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ratio, save  # noqa: E402

PROMPT = [{"role": "user", "content": "Write three sentences about the sea."}]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    import torch

    from ftspace.chat import ChatModel, GenerationSettings
    from ftspace.models import resolve_model

    chat = ChatModel.from_base(resolve_model("default"))
    model, tok = chat.model, chat.tokenizer
    settings = GenerationSettings(max_new_tokens=a.tokens, temperature=0.0)
    inputs = tok.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)

    def raw():
        t0 = time.perf_counter()
        with torch.inference_mode():
            model.generate(**inputs, max_new_tokens=1, do_sample=False, pad_token_id=tok.pad_token_id)
        ttft = time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=a.tokens, min_new_tokens=a.tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        n = out.shape[1] - inputs["input_ids"].shape[1]
        return ttft, n / (time.perf_counter() - t0)

    def ours():
        t0 = time.perf_counter()
        ttft, text = None, ""
        for text in chat.stream(PROMPT, settings):
            if ttft is None and text:
                ttft = time.perf_counter() - t0
        n = len(tok(text, add_special_tokens=False)["input_ids"])
        return ttft, n / (time.perf_counter() - t0)

    raw(), ours()  # warm up
    r, o = [], []
    for _ in range(a.repeats):  # interleaved, so drift in the machine's speed hits both alike
        r.append(raw())
        o.append(ours())
    med = lambda xs, i: statistics.median(x[i] for x in xs)  # noqa: E731
    result = {"setup": {"model": "SmolLM2-135M-Instruct (bundled)", "new_tokens": a.tokens, "repeats": a.repeats},
              "raw_generate": {"ttft_s": round(med(r, 0), 3), "tokens_per_s": round(med(r, 1), 1)},
              "ours_stream": {"ttft_s": round(med(o, 0), 3), "tokens_per_s": round(med(o, 1), 1)},
              "tokens_per_s_ratio": ratio(med(o, 1), med(r, 1)),
              "ttft_ratio_raw_over_ours": ratio(med(r, 0), med(o, 0)),
              "target": "ours >= 0.9x raw",
              "note": "Earlier 0.75x TTFT: each reply started generate() on a fresh thread, and torch sets up "
                      "its CPU thread pool per calling thread (raw generate on a fresh thread measured "
                      "137-157 ms vs 114-140 ms on a reused one). generate() now runs on long-lived threads; "
                      "raw and ours are interleaved per repeat."}
    print(result)
    save("chat", result)


if __name__ == "__main__":
    main()
