"""Regenerate bench/RESULTS.md from bench/out/*.json (written by the bench_*.py scripts)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import OUT, ROOT, git  # noqa: E402


def load(name):
    path = OUT / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


# What each result describes: a figure is stale once these paths changed after the commit it was measured at.
DESCRIBES = {"engine": ["ftspace/engine", "bench/bench_engine.py", "bench/bare_train.py"],
             "coldstart": ["ftspace", "app.py", "bench/bench_coldstart.py"],
             "warm_start": ["ftspace/engine", "ftspace/targets/local.py", "bench/bench_warm_start.py"],
             "data": ["ftspace/data", "ftspace/engine/prepare.py", "bench/bench_data.py"],
             "chat": ["ftspace/chat.py", "ftspace/models.py", "bench/bench_chat.py"],
             "slicing": ["ftspace/targets/zerogpu.py", "ftspace/engine", "bench/bench_slicing.py"],
             "forgetting": ["ftspace/evaluation", "ftspace/engine", "ftspace/config.py", "examples/general.jsonl",
                            "bench/bench_forgetting.py"],
             "forgetting_presets": ["ftspace/evaluation", "ftspace/engine", "ftspace/config.py",
                                    "examples/general.jsonl", "bench/bench_forgetting.py"],
             "gpu": ["ftspace/engine", "ftspace/chat.py", "ftspace/models.py", "bench/gpu_check.py"],
             "cpu_precision": ["ftspace/chat.py", "ftspace/models.py", "ftspace/engine",
                               "bench/bench_cpu_precision.py"],
             "demo_wall": ["ftspace", "bench/demo_wall.py"],
             "teacher_batch": ["ftspace/chat.py", "ftspace/data/create/teacher.py", "bench/bench_teacher_batch.py"],
             "zerogpu_calls": ["ftspace/targets/zerogpu.py", "ftspace/engine", "bench/bench_zerogpu_calls.py"],
             "export": ["ftspace/export", "ftspace/chat.py", "bench/bench_export.py"],
             "forgetting_uploads": ["ftspace/evaluation", "ftspace/engine", "ftspace/config.py",
                                    "examples/general.jsonl", "bench/bench_uploads.py", "bench/data"],
             "forgetting_uploads_mix1": ["ftspace/evaluation", "ftspace/engine", "ftspace/config.py",
                                         "examples/general.jsonl", "bench/bench_uploads.py", "bench/data"],
             "forgetting_control": ["ftspace/evaluation", "ftspace/engine", "ftspace/config.py",
                                    "examples/general.jsonl", "bench/bench_uploads.py"],
             "grpo": ["ftspace/engine", "ftspace/rewards.py", "ftspace/data", "examples/arithmetic.jsonl",
                      "bench/bench_grpo.py", "tests/test_grpo.py"]}


def freshness(name: str, m: dict) -> str:
    """'current', or why the figure is stale: no commit recorded, measured on a dirty tree, or the code it
    describes changed since its commit."""
    recorded = m.get("commit")
    if not recorded or recorded == "unknown":
        return "**stale**: measured before results recorded their commit; re-run it to trust it"
    code, _ = git("cat-file", "-e", f"{recorded}^{{commit}}")
    if code:
        return f"**stale**: commit {recorded[:10]} is not in this repository"
    code, changed = git("diff", "--name-only", recorded, "HEAD", "--", *DESCRIBES.get(name, ["ftspace"]))
    if changed:
        files = changed.splitlines()
        return (f"**stale**: {len(files)} file(s) it measures changed since ({', '.join(files[:3])}"
                f"{', ...' if len(files) > 3 else ''})")
    return "current (the code it measures is unchanged since)" + (
        "; measured on a tree with uncommitted changes" if m.get("dirty") else "")


def machine_line(r):
    """Where a figure came from: date, commit (dirty or not), machine (CPU model, flags, cores), Python, and
    whether the code it measures changed since."""
    m = r["machine"]
    hw = m["hardware"]
    where = hw.get("name", hw["kind"]) + (f", {hw.get('memory')}" if hw.get("memory") else "")
    cpu = m.get("cpu")
    cpu_text = (f"CPU {cpu['model']} (flags: {', '.join(cpu['flags']) or 'none of interest'})" if cpu
                else "CPU model and flags not recorded")
    commit = (f"commit {m['commit'][:10]}{' (dirty tree)' if m.get('dirty') else ''}" if m.get("commit")
              else "commit not recorded")
    return (f"_Measured {m['date']} at {commit} on {where}, {cpu_text}, {m['cpu_count']} cores, Python "
            f"{m['python']}. Figures: {freshness(r.get('benchmark', ''), m)}._")


def fmt(sp: dict) -> str:
    """min / median / max over the rounds, and how many rounds where the result says."""
    return f"{sp['min']:g} / {sp['median']:g} / {sp['max']:g}" + (f" ({sp['n']} rounds)" if sp.get("n") else "")


def main():
    lines = ["# Benchmarks", "", "Regenerate with `make bench` (runs every `bench/bench_*.py`, then this report).",
             "Contenders are measured in the same session, interleaved over several rounds; each figure is "
             "min / median / max over the rounds, ratios are of medians, and a difference is called "
             "(higher / lower) only where the two spreads do not overlap.", ""]
    e = load("engine")
    if e:
        o, c = e["engine_overhead"], e["contenders"]
        lines += ["## 1. Engine overhead: ftspace against bare scripts", machine_line(e), "",
                  f"Setup: {e['setup']}. Ours runs as shipped: it writes its atomic checkpoints every "
                  f"{e['setup']['ours_save_steps']} steps inside the timed training; the bare scripts save "
                  "nothing. The bare TRL script installs ftspace's CPU loss patch (TRL 1.15's loss kernel is "
                  "CUDA-only; without the patch TRL does not train on CPU at all), so on CPU it is TRL + that patch.",
                  "", "| contender | tokens/s (min / median / max) | peak memory, MB (min / median / max) |",
                  "| --- | --- | --- |"]
        lines += [f"| {k} | {fmt(v['tokens_per_s'])} | {fmt(v['peak_mb'])} |" for k, v in c.items()] + [""]
        for label, key, bare in (("Unsloth path", "unsloth", "bare Unsloth script"),
                                 ("TRL+PEFT path", "trl", "bare TRL script")):
            r = o[key]
            lines.append(f"- {label} (ours / {bare}): tokens/s ratio of medians **{r['tokens_per_s_ratio']}** "
                         f"({r['tokens_per_s']}); memory ratio **{r['peak_memory_ratio']}** ({r['peak_memory']})")
        b = e["backends"]
        lines += [f"- Target: {o['target']}", "", "## 2. Backends: Unsloth against plain HF + PEFT", "",
                  f"- tokens/s: Unsloth / HF = **{b['tokens_per_s_ratio']}** ({b['tokens_per_s']}); peak memory: "
                  f"Unsloth / HF = **{b['peak_memory_ratio']}** ({b['peak_memory']}) (CPU, the worker's own RSS)",
                  f"- GPU (1B-class model, 4-bit and 16-bit LoRA): "
                  f"{e['gpu'] if isinstance(e['gpu'], str) else json.dumps(e['gpu'])}", ""]
    cs = load("coldstart")
    if cs:
        lines += ["## 3. Cold start", machine_line(cs), "",
                  f"- `python app.py` to first HTTP 200: median **{cs['first_http_200_s']['median']} s** "
                  f"(all: {cs['first_http_200_s']['all']})",
                  f"- heavy modules loaded by the UI process: **{cs['heavy_modules_loaded'] or 'none'}**",
                  f"- import time: {cs['import_s']}", f"- target {cs['target']}: **{'met' if cs['met'] else 'missed'}**", ""]
    d = load("data")
    if d:
        lines += ["## 4. Data pipeline", machine_line(d), "", f"Setup: {d['setup']}. {d['note']}", "",
                  "| format | rows/s (min / median / max) | ratio to datasets.map (medians) | vs baseline | "
                  "peak RSS, MB (median) | memory ratio |", "| --- | --- | --- | --- | --- | --- |"]
        for name, t in d["throughput"].items():
            lines.append(f"| {name} | {fmt(t['rows_per_s'])} | {t['rows_per_s_ratio']} | {t['rows_per_s_vs_baseline']} "
                         f"| {t['peak_mb']['median']} | {t['peak_memory_ratio']} |")
        lines += ["", "The commands, each in a fresh process, its own peak memory (VmHWM) and wall time:", "",
                  "| file | rows | `data inspect --no-tokens` | `data inspect` (token statistics) | "
                  "preparation for training |", "| --- | --- | --- | --- | --- |"]
        for r in d["commands"].values():
            if isinstance(r, dict):
                cell = lambda m: f"{m['peak_mb']} MB, {m['seconds']} s" + (  # noqa: E731
                    f" (measured {m['measured']})" if m.get("measured") else "")
                lines.append(f"| {r['file_mb']} MB | {r['rows']} | {cell(r['inspect_no_tokens'])} | "
                             f"{cell(r['inspect_with_tokens'])} | {cell(r['prepare'])} |")
        lines.append("")
    ch = load("chat")
    if ch and "now" in ch:
        names = {"before": "before: a second thread computing, adapter unmerged",
                 "one_thread_unmerged": "one compute thread, adapter unmerged",
                 "now": "now: one compute thread, adapter merged where float32" + (
                     "" if ch.get("merged_in_now") else " (here: not merged, this machine computes in bfloat16)"),
                 "now_float32": "now, FTSPACE_COMPUTE_DTYPE=float32 (merged)",
                 "raw_merged": "raw generate(), merged, main thread (the ceiling)"}
        lines += ["## 5. Chat on a CPU", machine_line(ch), "", f"Setup: {ch['setup']}", "",
                  "| contender | tokens/s (min / median / max) | first token, s |", "| --- | --- | --- |"]
        lines += [f"| {label} | {fmt(ch[key]['tokens_per_s'])} | {fmt(ch[key]['ttft_s'])} |"
                  for key, label in names.items() if key in ch]
        lines += ["", f"- now / before: **{ch['now_over_before']}** ({ch['now_vs_before']}); now in float32 / before: "
                  f"**{ch['now_float32_over_before']}**; now / one thread unmerged: "
                  f"{ch['now_over_one_thread_unmerged']}; now / raw: {ch['now_over_raw_merged']}. Target: "
                  f"{ch['target']}: **{ch['target_met']}**.", ""]
    s = load("slicing")
    if s:
        lines += ["## 6. ZeroGPU slicing", machine_line(s), "", f"Setup: {s['setup']}", "",
                  "| per slice (every slice of every round) | min / median / max |", "| --- | --- |",
                  f"| overhead (s): wall time minus training | {fmt(s['slice_overhead_s'])} |",
                  f"| of which load + restore before the first step (s) | {fmt(s['slice_load_s'])} |",
                  f"| overhead share of the slice | {fmt(s['overhead_share'])} |", "",
                  f"- whole run: sliced {fmt(s['sliced_wall_s'])} s, unsliced {fmt(s['unsliced_wall_s'])} s; sliced / "
                  f"unsliced per round: **{fmt(s['sliced_over_unsliced'])}**", f"- {s['note']}", ""]
    lines += ["## 7. What a preset teaches and what it breaks (bench/bench_forgetting.py)"]
    for group in ("forgetting", "forgetting_presets"):
        fo = load(group)
        if not fo:
            continue
        st = fo["setup"]
        lines += [machine_line(fo), "", f"Setup (`--group {group}`): {st['data']}, scored on {st['test']} and the "
                  f"{st['probe_questions']}-question general probe; the default model; one round per seed "
                  f"({st['rounds']} rounds, every contender each round). The scorecard warns below a change of "
                  f"-{st['warn_threshold']:g}.", "",
                  "| contender | optimizer steps | fact in held-out answers (of 6) | tuned token F1 | general probe change "
                  "| warned |", "| --- | --- | --- | --- | --- | --- |"]
        for name, r in fo["summary"].items():
            steps = fmt(r["steps"]) if r.get("steps") else f"{st['preset']['max_steps']} (max_steps)"  # older files
            lines.append(f"| {name} | {steps} | {fmt(r['learned'])} | {fmt(r['f1_tuned'])} | "
                         f"{fmt(r['probe_change'])} | {r['warned']} of {st['rounds']} |")
        lines.append("")
    g = load("gpu")
    lines += ["## 8. GPU (bench/gpu_check.py)"]
    if g:
        lines += [machine_line(g), "", f"Device: **{g['device']}** ({g['memory']}); model {g['model']}, {g['steps']} "
                  f"steps, max_seq_length {g['seq']} (the examples reached the tokens per example shown), "
                  f"{g['rounds']} interleaved rounds (min / median / max).", "",
                  "| training | backend | tokens per example | tokens/s | peak GPU memory (MB, max_memory_allocated in "
                  "each worker, the same for both) |", "| --- | --- | --- | --- | --- |"]
        for name, r in g["train"].items():
            t, m = r["tokens_per_s"], r["peak_gpu_mb"]
            lines.append(f"| {name} | {r['backend']} | {r.get('tokens_per_example', '?')} | {t['min']} / {t['median']} / {t['max']} | "
                         f"{m['min']} / {m['median']} / {m['max']} |")
        c = g["chat_tokens_per_s"]
        lines += ["", f"- chat on {g['chat_device']} with the 16-bit run's adapter: {c['min']} / {c['median']} / "
                      f"{c['max']} tokens/s", f"- merge (base + adapter, 16-bit): {g['merge_s']} s", ""]
    else:
        lines += ["", "Not measured yet: no CUDA GPU has been available to this project. On a machine with one, "
                      "`.venv/bin/python bench/gpu_check.py` fills this section (and `pytest -m gpu` runs the GPU "
                      "tests).", ""]
    lines += cpu_precision_section(load("cpu_precision"), load("demo_wall"))
    w = load("warm_start")
    lines += ["## 10. A run's worker started warm against cold (bench/bench_warm_start.py)"]
    if w:
        lines += [machine_line(w), "", f"Setup: {w['setup']}. Wall: from `local.start` to completed; CPU: what the "
                  "whole machine spent meanwhile.", "",
                  "| flavor | warm wall s | cold wall s | ratio | warm CPU s | cold CPU s | ratio |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {name} | {fmt(f['warm']['wall_s'])} | {fmt(f['cold']['wall_s'])} | "
                  f"**{f['wall_ratio_warm_over_cold']}** ({f['wall']}) | {fmt(f['warm']['cpu_s'])} | "
                  f"{fmt(f['cold']['cpu_s'])} | **{f['cpu_ratio_warm_over_cold']}** ({f['cpu']}) |"
                  for name, f in w["flavors"].items()] + [""]
    else:
        lines += ["", "Not measured yet: `.venv/bin/python bench/bench_warm_start.py`.", ""]
    t = load("teacher_batch")
    lines += ["## 11. The bundled teacher: one batched generation against one chat at a time "
              "(bench/bench_teacher_batch.py)"]
    if t:
        lines += [machine_line(t), "", f"Setup: {t['setup']}. Identical replies both ways: {t['identical_replies']}.",
                  "", "| one at a time s | batched s | batched / one at a time (medians) |", "| --- | --- | --- |",
                  f"| {fmt(t['one_at_a_time_s'])} | {fmt(t['batched_s'])} | "
                  f"**{t['ratio_batched_over_one_at_a_time']}** ({t['verdict']}) |", ""]
    else:
        lines += ["", "Not measured yet: `.venv/bin/python bench/bench_teacher_batch.py`.", ""]
    z = load("zerogpu_calls")
    lines += ["## 12. A ZeroGPU call's fixed cost: fresh and reused workers (bench/bench_zerogpu_calls.py)"]
    if z:
        share = z["share_of_call"]
        lines += [machine_line(z), "", f"Setup: {z['setup']}. Seconds from the call's start to its first step "
                  "(imports, load, restore); share of a 60 s and a 120 s call.", "",
                  "| worker | before the first step, s | share of 60 s | share of 120 s |", "| --- | --- | --- | --- |",
                  f"| fresh (a new fork) | {fmt(z['fresh_load_s'])} | {share['60s']['fresh']} | "
                  f"{share['120s']['fresh']} |",
                  f"| reused (imports kept) | {fmt(z['reused_load_s'])} | {share['60s']['reused']} | "
                  f"{share['120s']['reused']} |", ""]
    else:
        lines += ["", "Not measured yet: `.venv/bin/python bench/bench_zerogpu_calls.py`.", ""]
    lines += export_section(load("export"))
    lines += grpo_section(load("grpo"))
    lines += uploads_section(load("forgetting_uploads"), load("forgetting_control"), load("forgetting_uploads_mix1"))
    (ROOT / "bench" / "RESULTS.md").write_text("\n".join(lines))
    print("wrote bench/RESULTS.md")


def uploads_section(u, control, variant=None) -> list[str]:
    """Section 15: small uploads' general answers, question by question, with the control (and a variant of the
    preset, `--set` changes) beside them; which runs the scorecard's rule (ftspace.evaluation.LOST_WARN, as it is
    now) warns of."""
    from ftspace.evaluation import GENERAL_DROP_WARN, LOST_WARN

    lines = ["## 15. What small uploads cost in general answers (bench/bench_uploads.py)"]
    if not u:
        return lines + ["", "Not measured yet: `.venv/bin/python bench/bench_uploads.py` (and `--only \"control: the "
                        "bundled general rows (example:general)\" --name forgetting_control`).", ""]
    st = u["setup"]
    changes = f" with {', '.join(st['changes'])}" if st.get("changes") else ""
    lines += [machine_line(u), "", f"Setup: the {st['preset']} preset{changes}, {st['model']}, seeds {st['seeds']}; "
              "each run scored on its upload's 6 held-out rows, on the "
              f"{st['probe_questions']}-question general probe and on {st['held_out_general_questions']} other short "
              "general questions the probe does not hold (bench/data/general_heldout.jsonl). *Lost*: right before "
              "tuning, wrong after; *gained*: the other way; *net*: the change the scorecard used to show alone. "
              f"*Warned now*: runs the scorecard warns of today (net below -{GENERAL_DROP_WARN:g}, or more than "
              f"{LOST_WARN:.1%} of the probe lost).", "",
              "| upload | learned (of 6) | probe lost | probe gained | probe net | other questions lost | gained | net "
              "| warned now |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    tried = f" (the preset with {', '.join(variant['setup']['changes'])})" if variant else ""
    for result, label in ((u, ""), (variant, tried), (control, " (control)")):
        if not result:
            continue
        if label:
            lines.append(f"| _{machine_line(result)[1:-1]}_ | | | | | | | | |")
        for name, s in result["summary"].items():
            runs = result["rounds"][name]
            warned = sum(r["probe"]["net_change"] < -GENERAL_DROP_WARN or r["probe"]["lost"] > LOST_WARN *
                         r["probe"]["questions"] for r in runs)
            lines.append(f"| {name}{label} | {fmt(s['learned'])} | {fmt(s['probe_lost'])} | {fmt(s['probe_gained'])} | "
                         f"{fmt(s['probe_net_change'])} | {fmt(s['held_out_lost'])} | {fmt(s['held_out_gained'])} | "
                         f"{fmt(s['held_out_net_change'])} | {warned} of {len(runs)} |")
    lines.append("")
    for name, s in u["summary"].items():
        lines.append(f"- {name}: lost most often: " + "; ".join(f"{q} ({n} of {s['learned']['n']} runs)"
                                                             for q, n in s["lost_most"][:5]))
    return lines + [""]


def grpo_section(g) -> list[str]:
    lines = ["## 14. GRPO on a CPU: the mean reward rises (bench/bench_grpo.py)"]
    if not g:
        return lines + ["", "Not measured yet: `.venv/bin/python bench/bench_grpo.py`.", ""]
    st = g["setup"]
    lines += [machine_line(g), "", f"Setup: {st['model']} on {st['data']}, rewards {', '.join(st['rewards'])}; "
              f"{st['prompts_per_step']} prompts x {st['num_generations']} replies of at most "
              f"{st['max_completion_length']} tokens a step, learning rate {st['learning_rate']:g}, {st['steps']} "
              f"steps; one run per seed ({', '.join(map(str, st['seeds']))}). The mean reward (weighted sum, as "
              f"TRL logs it) of the first and the last {st['compared_steps']} steps.", "",
              "| seed | first steps | last steps | gain | length reward (last) | answer right (last) | s/step | precision |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for seed, r in g["per_seed"].items():
        lines.append(f"| {seed} | {r['first']:.3f} | {r['last']:.3f} | {r['gain']:+.3f} | {r['short_last']:.3f} | "
                     f"{r['right_last']:.3f} | {r['step_s']:.2f} | {r['compute_dtype']} |")
    lines += ["", f"Across seeds (min / median / max): first {fmt(g['first'])}, last {fmt(g['last'])}, gain "
              f"**{fmt(g['gain'])}**, seconds per step {fmt(g['step_s'])}.", ""]
    return lines


def export_section(x) -> list[str]:
    lines = ["## 13. GGUF exports checked against the run, and chat through llama.cpp (bench/bench_export.py)"]
    if not x:
        return lines + ["", "Not measured yet: `.venv/bin/python bench/bench_export.py`.", ""]
    lines += [machine_line(x), "", f"Setup: {x['setup']}.", "",
              "| type | size, MB | export + check, s | reader | same greedy answers | mean KL / token (max) | "
              "same top token | perplexity ratio |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for quant, e in x["exports"].items():
        for p in e["parity"]:
            lines.append(f"| {quant} | {e['mb']} | {e['seconds']} | {p['reader']} | {p['same_greedy_answers']} of "
                         f"{p['prompts']} | {p['mean_kl']:.1e} ({p['max_kl']:.1e}) | {100 * p['same_top_token']:.1f}% | "
                         f"{p['perplexity_ratio']} |")
    c = x.get("chat")
    if c:
        lines += ["", "| chat | tokens/s (min / median / max) | first token, s (min / median / max) |",
                  "| --- | --- | --- |"]
        lines += [f"| {k} | {fmt(v)} | {fmt(c['first_token_s'][k])} |" for k, v in c["tokens_per_s"].items()]
        lines += ["", f"- llama.cpp / torch chat, tokens/s (medians): **{c['ratio_llama_cpp_over_torch']}** "
                  f"({c['verdict_llama_cpp']})"]
    else:
        lines += ["", "- llama-cpp-python was not installed: no llama.cpp figures."]
    return lines + [""]


def cpu_precision_section(p, demo) -> list[str]:
    lines = ["## 9. CPU precision: bfloat16 against float32, and llama.cpp (bench/bench_cpu_precision.py)"]
    if not p:
        return lines + ["", "Not measured yet: `.venv/bin/python bench/bench_cpu_precision.py`.", ""]
    cpu, mm, ch, tr = p["cpu"], p["matmul"], p["chat"], p["train_hf"]
    lines += [machine_line(p), "",
              f"CPU: {cpu['model']}; flags {', '.join(cpu['flags']) or 'none of interest'}; bfloat16 units: "
              f"**{cpu['bfloat16_units'] or 'none'}**; torch's CPU capability {cpu['torch_capability']}; "
              f"{cpu['threads']} threads. ftspace decides: **{cpu['ftspace_decides']}**.", "",
              f"Setup: {p['setup']}.", "",
              "| measured | float32 | bfloat16 | bfloat16 / float32 (medians) |", "| --- | --- | --- | --- |",
              f"| matmul {mm['size']}x{mm['size']}, GFLOP/s | {fmt(mm['float32_gflops'])} | "
              f"{fmt(mm['bfloat16_gflops'])} | {mm['ratio']} |",
              f"| chat, tokens/s (adapter on) | {fmt(ch['float32']['tokens_per_s'])} | "
              f"{fmt(ch['bfloat16']['tokens_per_s'])} | **{p['chat_bf16_over_fp32']}** ({p['chat_verdict']}) |",
              f"| chat, time to first token (s) | {fmt(ch['float32']['ttft_s'])} | {fmt(ch['bfloat16']['ttft_s'])} | |",
              f"| chat, model + adapter load (s) | {ch['float32']['load_s']} | {ch['bfloat16']['load_s']} | |",
              f"| HF-fallback training, tokens/s | {fmt(tr['float32']['tokens_per_s'])} | "
              f"{fmt(tr['bfloat16']['tokens_per_s'])} | **{p['train_bf16_over_fp32']}** ({p['train_verdict']}) |",
              f"| HF-fallback loss per step (round 1) | {', '.join(f'{x:.4f}' for x in tr['float32']['losses'])} | "
              f"{', '.join(f'{x:.4f}' for x in tr['bfloat16']['losses'])} | worst difference "
              f"{tr['loss_worst_difference']} (tolerance {tr['loss_tolerance']}: "
              f"{'within' if tr['loss_within_tolerance'] else 'OUTSIDE'}) |", "",
              f"- Target: {p['target']}: **{p['target_met']}**."]
    lc = p["llama_cpp"]
    if isinstance(lc, dict):
        r = p["ours_over_llama_cpp"]
        lines += [f"- llama.cpp ({lc['engine']}): {fmt(lc['tokens_per_s'])} tokens/s, first token "
                  f"{fmt(lc['ttft_s'])} s. Our chat ({r['precision']}) as a ratio of it: **{r['adapter_on']}** with "
                  f"the adapter on, **{r['adapter_off']}** with it off; llama.cpp's first token / ours "
                  f"{r['ttft_llama_cpp_over_ours']}."]
    else:
        lines.append(f"- llama.cpp: {lc}")
    lines += [f"- {p['gap']}" if p.get("gap") else ""]
    lines += chat_reconciled(load("chat"), p) + [""]
    if demo:
        lines += [f"`make demo` wall time (bench/demo_wall.py, {demo['rounds']} interleaved rounds, {demo['note']}):", "",
                  "| code | wall s (min / median / max) | of which: training s | after training s |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {name} | {fmt(r['wall_s'])} | {fmt(r['train_s'])} | {fmt(r['after_s'])} |"
                  for name, r in demo["contenders"].items()] + [""]
    return lines


def chat_reconciled(ch, p) -> list[str]:
    """Chat speed is measured in two places (section 5: our stream against raw generate; this section: one precision
    against the other): say what each measured, so two different figures are not read as one disagreeing."""
    if not ch:
        return []
    def where(r):
        m = r["machine"]
        cpu = m.get("cpu") or r.get("cpu") or {}
        commit = m["commit"][:10] if m.get("commit") else "not recorded"
        return (f"{cpu.get('model') or 'a CPU not recorded'} ({', '.join(cpu.get('flags', [])) or 'flags not recorded'}"
                f"), {m['date']}, commit {commit}")
    five = (ch.get("now") or ch.get("ours_stream"))["tokens_per_s"]["median"]
    nine = p["chat"]["float32"]["tokens_per_s"]["median"], p["chat"]["bfloat16"]["tokens_per_s"]["median"]
    return [f"- The chat speeds of sections 5 and 9 are different measurements, not one that disagrees: section 5 streams "
            f"{ch['setup']['new_tokens']} new tokens in {ch['setup'].get('precision', 'the precision of its day')} "
            f"({five:g} tokens/s; {where(ch)}); this section generates {p['setup']['chat_new_tokens']} tokens in each "
            f"precision (float32 {nine[0]:g}, bfloat16 {nine[1]:g} tokens/s; {where(p)}). Reply length (the first "
            "token's prompt pass weighs more in a short reply), precision and above all the machine differ: compare "
            "chat figures only where these lines name the same machine."]


if __name__ == "__main__":
    main()
