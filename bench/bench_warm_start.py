"""Benchmark 10: a tiny run's worker started warm (forked from ftspace.engine.warm) against cold (a fresh
`python -m ftspace.engine.worker`), interleaved over --rounds rounds, one flavor at a time (Unsloth's SFT, the plain
HF path). Each figure: the run's wall time from `local.start` to completed, and the CPU seconds the whole machine
spent meanwhile (/proc/stat), so the warm process's share of the work is counted where it happens."""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ratio, save, spread, verdict  # noqa: E402


def busy_cpu_s() -> float:
    a = list(map(int, open("/proc/stat").readline().split()[1:]))
    return (sum(a[:8]) - a[3] - a[4]) / os.sysconf("SC_CLK_TCK")


def tiny_model(tmp: Path) -> Path:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from ftspace.models import ensure_default_model

    tok = AutoTokenizer.from_pretrained(ensure_default_model(progress=lambda *_: None))
    path = tmp / "tiny"
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                 tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
                     ).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ftspace-bench-warm-"))
    os.environ.update(FTSPACE_RUNS=str(tmp / "runs"), TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    from ftspace.config import RunConfig
    from ftspace.engine.warm import STARTED_WARM
    from ftspace.targets import local

    model = tiny_model(tmp)
    starters = local.warm_up()
    if not starters:
        sys.exit("no warm start on this machine (not a CPU machine, or FTSPACE_WARM_START=0)")
    time.sleep(15)  # the warm processes import while nothing else runs; their ready wait is not in a round
    setup = dict(model_name=str(model), dataset="example:chat", max_steps=6, save_steps=2, max_seq_length=256,
                 per_device_train_batch_size=2, learning_rate=5e-3, gradient_checkpointing=False)
    figures = {}
    for backend in ("auto", "hf"):
        rounds = {"warm": {"wall_s": [], "cpu_s": []}, "cold": {"wall_s": [], "cpu_s": []}}
        for _ in range(args.rounds):
            for mode in ("warm", "cold"):
                os.environ["FTSPACE_WARM_START"] = "1" if mode == "warm" else "0"
                c0, t0 = busy_cpu_s(), time.perf_counter()
                run, _ = local.start(RunConfig(backend=backend, **setup))
                st = run.wait(timeout=600)
                rounds[mode]["wall_s"].append(time.perf_counter() - t0)
                rounds[mode]["cpu_s"].append(busy_cpu_s() - c0)
                assert st["status"] == "completed", run.log_path.read_text()[-2000:]
                assert (STARTED_WARM in run.log_path.read_text()) == (mode == "warm"), mode
        warm, cold = ({k: spread(v) for k, v in rounds[m].items()} for m in ("warm", "cold"))
        figures["unsloth" if backend == "auto" else "hf"] = {
            "warm": warm, "cold": cold,
            "wall_ratio_warm_over_cold": ratio(warm["wall_s"]["median"], cold["wall_s"]["median"]),
            "wall": verdict(warm["wall_s"], cold["wall_s"]),
            "cpu_ratio_warm_over_cold": ratio(warm["cpu_s"]["median"], cold["cpu_s"]["median"]),
            "cpu": verdict(warm["cpu_s"], cold["cpu_s"])}
    for starter in starters:
        starter.close()
    save("warm_start", {"setup": f"tiny 2-layer Llama, 6 steps, batch 2, example:chat; {args.rounds} rounds, warm "
                                 "and cold interleaved", "flavors": figures})


if __name__ == "__main__":
    main()
