"""The one Trainer callback: events, status, graceful stop and early stopping.

Each logged step appends one JSON line to events.jsonl (step, loss, learning rate, grad norm, eval
loss, tokens/s, elapsed, ETA, peak memory) and refreshes status.json, which is all the UI and the
CLI read. A STOP file in the run folder ends training after the current step, saving a checkpoint.
"""

from __future__ import annotations

import json
import math
import sys
import time

from transformers import TrainerCallback

from ftspace.engine import distributed
from ftspace.engine.saving import SAVE_MARGIN_S


# The preference trainers' (TRL DPO / ORPO) log keys, as events.jsonl names them.
PREFERENCE_LOGS = {"rewards/margins": "reward_margin", "rewards/accuracies": "reward_accuracy",
                   "eval_rewards/margins": "eval_reward_margin", "eval_rewards/accuracies": "eval_reward_accuracy"}


# GRPO's log keys (TRL), as events.jsonl names them; each reward's mean is `reward_<name>`
GRPO_LOGS = {"reward": "reward", "reward_std": "reward_std", "completions/mean_length": "completion_length",
             "completions/clipped_ratio": "completion_clipped", "kl": "kl"}
SAMPLE_EVERY = 5  # GRPO: a few prompts with their replies and rewards every this many steps (and the first)
SAMPLES_SHOWN = 3


def peak_memory_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    from ftspace.memory import peak_rss_mb

    return peak_rss_mb()  # this process's own (ru_maxrss would include the parent's peak at fork)


def _clip(text: str, n: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n - 3] + "..."


class ProgressCallback(TrainerCallback):
    def __init__(self, run, cfg, backend: str, deadline: float | None = None, final_eval_rows: int = 0):
        self.run, self.cfg, self.backend = run, cfg, backend
        self.deadline = deadline  # a ZeroGPU call's end, counted from when it got its GPU
        self.final_eval_rows = final_eval_rows  # rows the evaluation after the last step reads (0: none follows)
        self.out_of_time = False
        self.step_end = None
        self.stop_file = run.path / "STOP"
        self.stopped = self.early_stopped = False
        self.last_loss = None
        self.best_eval, self.bad_evals = float("inf"), 0
        self.t0 = self.first_step = None
        self.last_time, self.last_tokens = None, 0
        self.samples = None
        if cfg.method == "grpo":
            from ftspace.rewards import Samples

            self.samples = Samples()  # the reward functions record what they scored; a few are kept every few steps

    # --- lifecycle
    def on_train_begin(self, args, state, control, **kwargs):
        self.t0 = self.last_time = self.step_end = time.time()
        self.first_step = state.global_step  # > 0 when resuming
        self.last_tokens = state.num_input_tokens_seen or 0
        self.run.set_status(status="running", step=state.global_step, total_steps=state.max_steps,
                            backend=self.backend)

    def on_step_end(self, args, state, control, **kwargs):
        if distributed.agree(self.stop_file.exists()) and not self.stopped:  # every process stops at this step
            self.stopped = True
            control.should_training_stop = True
            control.should_save = True  # a checkpoint, so a stopped run can be resumed
            self.run.set_status(status="stopping", step=state.global_step)
            self._say(f"stop requested: stopping after step {state.global_step}")
        elif self.deadline is not None and not self.out_of_time and self._no_time_for_another_step(
                last=state.global_step + 1 >= state.max_steps,
                rows_per_step=args.per_device_train_batch_size * args.gradient_accumulation_steps):
            self.out_of_time = True  # end this time slice with a checkpoint; the next slice resumes from it
            control.should_training_stop = True
            control.should_save = True
        self.step_end = time.time()
        return control

    def _no_time_for_another_step(self, last: bool = False, rows_per_step: int = 1) -> bool:
        """Would one more step and what must follow it overrun the deadline? After a step, the checkpoint's save;
        after the run's last step, its final evaluation (forward passes only: costed as one step per step's worth of
        rows) and the adapter's save. (At least one step per call: this is asked at the end of a step, so every
        call makes progress.)"""
        now = time.time()
        step = now - self.step_end
        after = step * math.ceil(self.final_eval_rows / max(1, rows_per_step)) + SAVE_MARGIN_S if last else 0.0
        return now + step + SAVE_MARGIN_S + after >= self.deadline

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = dict(logs or {})
        now = time.time()
        tokens = state.num_input_tokens_seen or 0
        done = state.global_step - self.first_step
        elapsed = now - self.t0
        event = {"step": state.global_step, "total_steps": state.max_steps, "time": round(now, 3),
                 "elapsed_s": round(elapsed, 2), "epoch": round(state.epoch or 0, 4)}
        for key in ("loss", "learning_rate", "grad_norm", "eval_loss"):
            if key in logs:
                event[key] = float(logs[key])
        for key, name in PREFERENCE_LOGS.items():  # DPO / ORPO: how far the chosen replies lead the rejected
            if key in logs:
                event[name] = float(logs[key])
        for key, value in logs.items():  # GRPO: the mean reward (each reward's too), reply length, KL
            name = GRPO_LOGS.get(key) or (f"reward_{key[8:-5]}" if key.startswith("rewards/") and key.endswith("/mean")
                                          else None)
            if name and isinstance(value, (int, float)) and math.isfinite(value):
                event[name] = round(float(value), 5)
        if "loss" in logs:
            self.last_loss = event["loss"]
            span = now - self.last_time
            if span > 0 and tokens > self.last_tokens:
                event["tokens_per_s"] = round((tokens - self.last_tokens) / span, 1)
            self.last_time, self.last_tokens = now, tokens
        if done > 0:
            event["eta_s"] = round(elapsed / done * (state.max_steps - state.global_step), 1)
        event["peak_memory_mb"] = peak_memory_mb()
        self._append(event)
        status = {"step": state.global_step, "total_steps": state.max_steps, "eta_s": event.get("eta_s")}
        if self.last_loss is not None:
            status["train_loss"] = self.last_loss
        if "eval_loss" in event:
            status["eval_loss"] = event["eval_loss"]
        if "reward" in event:
            status["reward"] = event["reward"]
        self.run.set_status(**status)
        if "loss" in event:
            eta = f", ETA {event['eta_s']:.0f}s" if "eta_s" in event else ""
            reward = f" reward {event['reward']:.3f}" if "reward" in event else ""
            self._say(f"step {state.global_step}/{state.max_steps} loss {event['loss']:.4f}{reward}{eta}")
        if self.samples is not None and "loss" in event:
            self._sample(state.global_step)

    def _sample(self, step: int):
        """Every SAMPLE_EVERY steps (and the first): a few prompts with a reply each and its rewards, in the events
        (the Train tab shows them) and the log, so a person sees what is being learned (and reward hacking)."""
        rows = self.samples.take(SAMPLES_SHOWN)
        if not rows or (step - self.first_step != 1 and step % SAMPLE_EVERY):
            return
        self._append({"step": step, "time": round(time.time(), 3), "samples": rows})
        for row in rows[:1]:
            scores = ", ".join(f"{k} {v:g}" for k, v in row["rewards"].items() if v is not None)
            self._say(f"sample at step {step}: {_clip(row['prompt'])!r} -> {_clip(row['completion'])!r} ({scores})")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        loss = (metrics or {}).get("eval_loss")
        if loss is None or not self.cfg.early_stopping_patience:
            return
        if loss < self.best_eval:
            self.best_eval, self.bad_evals = loss, 0
        else:
            self.bad_evals += 1
            if self.bad_evals >= self.cfg.early_stopping_patience:
                self.early_stopped = True
                control.should_training_stop = True
                self._say(f"early stopping: eval loss has not improved for {self.bad_evals} evaluations")

    def record_eval(self, metrics: dict):
        if "eval_loss" in metrics:
            status = self.run.read_status()
            event = {"step": status.get("step", 0), "total_steps": status.get("total_steps"),
                     "time": round(time.time(), 3), "eval_loss": float(metrics["eval_loss"])}
            self._append(event)
            self.run.set_status(eval_loss=event["eval_loss"])

    def record_slice(self, load_s: float, train_s: float):
        """One event per ZeroGPU time slice: how much of it went to loading and resuming vs training."""
        self._append({"slice": True, "step": self.run.read_status().get("step", 0), "time": round(time.time(), 3),
                      "load_s": round(load_s, 2), "train_s": round(train_s, 2)})

    def _say(self, message: str):
        if distributed.is_main():
            print(f"[ftspace] {message}", flush=True)

    def _append(self, event: dict):
        if not distributed.is_main():  # with several processes, process 0 records
            return
        with open(self.run.events_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(event) + "\n")
        sys.stdout.flush()
