"""The training worker: `python -m ftspace.engine.worker RUN_DIR [--resume]`.

Runs in its own process, never inside the one that serves the UI. Reads the run's config, trains,
and reports only through files in the run folder (status.json, events.jsonl, log.txt via stdout).
Reads top to bottom: backend, model, data, trainer, train, save.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

from ftspace.engine import distributed
from ftspace.engine.distributed import log
from ftspace.engine.saving import is_disk_full
from ftspace.errors import FtspaceError
from ftspace.runs import Run


def build_trainer(run: Run, deadline: float | None = None):
    """(trainer, model, tokenizer, progress callback) for a run, exactly as `train` uses them; the tests
    take real batches from it (`trainer.get_train_dataloader()`) to check what the loss is computed on."""
    cfg = run.config()

    # --- precision: one decision (ftspace.models.compute_placement), which Unsloth's CPU path is told as well:
    # it reads UNSLOTH_CPU_BF16 once, when it is imported
    from ftspace.models import cpu_computes_bf16, hardware, precision_text

    kind = hardware()["kind"]
    if kind == "cpu":
        os.environ["UNSLOTH_CPU_BF16"] = "1" if cpu_computes_bf16(cfg.compute_dtype) else "0"
    log(f"computing in {precision_text(cfg.compute_dtype, kind)}")

    # --- backend: unsloth must be imported before transformers, trl and peft
    from ftspace.engine import backends

    backend = backends.choose(cfg.backend, log, cfg.method)

    from ftspace.access import hub_token
    from ftspace.data.tokenize import set_chat_template
    from ftspace.engine.prepare import load_prepared, prepare

    # --- model and data on local disk, the data tokenized (a shared app's request did this already,
    # with the visitor's token; this process then has no credentials and no Hub access)
    if not distributed.is_main():
        distributed.barrier()  # process 0 downloads and tokenizes; the others then read what it wrote
    prepared = prepare(run, hub_token(), log)
    if distributed.is_main():
        distributed.barrier()
    model_path = prepared["model_path"]
    log(f"loading {cfg.model_name} ({model_path}) with the {backend} backend")
    model, tokenizer, backend = backends.load(cfg, model_path, backend, log)
    template = set_chat_template(tokenizer, cfg.chat_template)
    trainable, total = model.get_nb_trainable_parameters()
    weights = str(model.get_base_model().dtype).removeprefix("torch.")
    log(f"LoRA r={cfg.lora_r}: {trainable:,} trainable of {total:,} parameters, base weights in {weights}; "
        f"chat template: {template}")
    log(prepared["data"])
    if cfg.method == "sft":
        train_ds, eval_ds = load_prepared(run, tokenizer, cfg, log)
    elif cfg.method == "grpo":
        from ftspace.engine.prepare import load_prompts

        train_ds, eval_ds = load_prompts(run, tokenizer), None
    else:
        from ftspace.engine.prepare import load_preference

        train_ds, eval_ds = load_preference(run, tokenizer)

    # --- trainer
    import torch
    from transformers import PrinterCallback

    from ftspace.engine.callbacks import ProgressCallback
    from ftspace.engine.saving import atomic_checkpoints

    from ftspace.models import compute_placement

    device, dtype = compute_placement(cfg.compute_dtype)
    on_gpu = device == "cuda"
    run.set_status(compute_dtype=str(dtype).removeprefix("torch."), device=device, weights_dtype=weights,
                   hardware=hardware_name(device), versions=library_versions(backend))
    if backend == "hf" and not on_gpu:
        from ftspace.engine import cpu_loss

        cpu_loss.install()  # TRL's loss kernel is CUDA-only; Unsloth's CPU backend patches its own
    common = dict(
        output_dir=str(run.checkpoints_dir),
        max_length=cfg.max_seq_length,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_steps,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        weight_decay=cfg.weight_decay,
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=max(2, cfg.save_total_limit),  # two at least: one survives a crash mid-write
        eval_strategy="steps" if cfg.eval_steps and eval_ds is not None else "no",
        eval_steps=cfg.eval_steps or None,
        gradient_checkpointing=cfg.gradient_checkpointing and backend == "hf",
        bf16=dtype == torch.bfloat16,  # on a CPU too: torch's CPU autocast, with bfloat16 units
        fp16=on_gpu and dtype == torch.float16,
        optim="adamw_torch",
        include_num_input_tokens_seen="non_padding",
        report_to=["tensorboard"] + (["trackio"] if cfg.trackio_project else []),
        project=cfg.trackio_project or "huggingface",
        run_name=run.id,
        disable_tqdm=True,
        dataloader_num_workers=0,
        use_cpu=not on_gpu,
    )
    rank, processes = distributed.world()
    if processes > 1:  # data-parallel: each process takes its share of every batch
        common.update(ddp_backend="nccl" if on_gpu else "gloo", ddp_find_unused_parameters=False)
        log(f"data-parallel over {processes} processes ({common['ddp_backend']}, {backend} backend): each optimizer "
            f"step sees {cfg.per_device_train_batch_size} x {cfg.gradient_accumulation_steps} x {processes} = "
            f"{cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * processes} examples")
    run.set_status(processes=processes)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run.path / "tensorboard")  # read by the Trainer's callback
    final_eval = len(eval_ds) if eval_ds is not None and not cfg.eval_steps else 0  # train() evaluates at the end
    progress = ProgressCallback(run, cfg, backend, deadline=deadline, final_eval_rows=final_eval)
    trainer_class, args = trainer_for(cfg, common, backend)
    extra = {}
    if cfg.method == "grpo":  # the rewards, named as the run's config names them; their samples for the log
        from ftspace import rewards

        extra["reward_funcs"], args.reward_weights = rewards.reward_functions(cfg, log, progress.samples)
    trainer = trainer_class(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                            processing_class=tokenizer, callbacks=[progress], **extra)
    run.set_status(trainer_class=backends.trainer_class_name(trainer))
    trainer.remove_callback(PrinterCallback)  # ours prints one readable line per step instead
    atomic_checkpoints(trainer, run.checkpoints_dir)
    if processes > 1 and not on_gpu:
        distributed.load_cpu_checkpoints_on_cpu(trainer)
    return trainer, model, tokenizer, progress


def trainer_for(cfg, common: dict, backend: str):
    """(trainer class, its config) for the run's method: TRL's SFT, DPO, ORPO or GRPO trainer (Unsloth's patched
    ones where Unsloth was imported first). DPO's and GRPO's reference model is the base itself: the same weights
    with the LoRA adapter switched off, so no second copy is loaded."""
    if cfg.method == "sft":
        from trl import SFTConfig, SFTTrainer

        return SFTTrainer, SFTConfig(**common, packing=cfg.packing)
    if cfg.method == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        # Replies are sampled (temperature 1, TRL's default); the prompt is as long as it is (max_length is SFT's)
        grpo = {k: v for k, v in common.items() if k not in ("max_length", "include_num_input_tokens_seen",
                                                           "per_device_eval_batch_size")}
        return GRPOTrainer, GRPOConfig(**grpo, num_generations=cfg.num_generations, beta=cfg.beta,
                                       max_completion_length=cfg.max_completion_length, log_completions=False,
                                       per_device_eval_batch_size=cfg.num_generations)
    if backend == "unsloth":
        from unsloth.models import PatchDPOTrainer

        PatchDPOTrainer()  # Unsloth's documented call before DPO/ORPO (this version patches on import)
    if cfg.method == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOTrainer, DPOConfig(**common, beta=cfg.preference_beta)
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    # ORPO's batches carry no `input_ids` to count tokens by (transformers would warn every step)
    return ORPOTrainer, ORPOConfig(**{**common, "include_num_input_tokens_seen": False}, beta=cfg.preference_beta)


def hardware_name(device: str) -> str:
    """What trained the run, for its card: the GPU's name, or the CPU's model."""
    import torch

    from ftspace.models import cpu_name

    return torch.cuda.get_device_name(0) if device == "cuda" else f"CPU: {cpu_name()}"


def library_versions(backend: str) -> str:
    """The versions that trained the run, for its card: "ftspace 0.1.0, torch 2.13.0, ..."."""
    from importlib.metadata import PackageNotFoundError, version

    names = ["ftspace", "torch", "transformers", "trl", "peft"] + (["unsloth"] if backend == "unsloth" else [])
    found = []
    for name in names:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return ", ".join(found)


def train(run: Run, resume: bool = False, deadline: float | None = None, started: float | None = None) -> str:
    """Train (or continue) a run; 'completed', or 'sliced' when the clock reached `deadline` first.

    A ZeroGPU Space calls this inside a GPU call, with the deadline counted from the moment the call
    got its GPU (`started`: its slice's fixed cost counts from there), and resumes in the next call.
    """
    t_start = started or time.time()
    cfg = run.config()
    trainer, model, tokenizer, progress = build_trainer(run, deadline)

    # --- train
    checkpoint = run.last_checkpoint() if resume else None
    if resume:
        log(f"resuming from {checkpoint.name}" if checkpoint else "no checkpoint yet: starting from step 0")
    t_train = time.time()
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if deadline is not None:
        progress.record_slice(load_s=t_train - t_start, train_s=time.time() - t_train)
    if progress.out_of_time and trainer.state.global_step < trainer.state.max_steps:
        run.set_status(status="running", step=trainer.state.global_step)
        log(f"time slice over at step {trainer.state.global_step}/{trainer.state.max_steps}; checkpoint saved")
        return "sliced"
    if trainer.eval_dataset is not None and not cfg.eval_steps:
        progress.record_eval(trainer.evaluate())

    # --- save: a standard PEFT adapter folder with the tokenizer and its chat template
    from ftspace.engine.callbacks import peak_memory_mb
    from ftspace.engine.saving import save_adapter

    if distributed.is_main():
        save_adapter(model, tokenizer, run.adapter_dir)
    stopped = progress.stopped or progress.early_stopped
    run.set_status(status="completed", step=trainer.state.global_step, total_steps=trainer.state.max_steps,
                   train_loss=progress.last_loss, train_loss_mean=result.training_loss,
                   stopped_early=stopped, finished=time.time(), peak_memory_mb=peak_memory_mb(),
                   train_runtime_s=result.metrics.get("train_runtime"),
                   tokens_seen=trainer.state.num_input_tokens_seen)
    log(f"done: adapter saved to {run.adapter_dir}")
    return "completed"


def execute(run: Run, resume: bool = False, deadline: float | None = None, started: float | None = None) -> str:
    """train() with failures recorded in the run's status: 'completed', 'sliced' or 'failed'."""
    run.set_status(status="running", pid=os.getpid(), error=None, started=time.time(), waiting=False)
    try:
        return train(run, resume=resume, deadline=deadline, started=started)
    except FtspaceError as e:
        log(f"failed: {e}")
        run.set_status(status="failed", error=str(e))
    except Exception as e:  # anything else is a bug: keep the traceback in the log, one line in status
        traceback.print_exc()
        first = str(e).splitlines()[0] if str(e) else ""
        if is_disk_full(e):
            checkpoint = run.last_checkpoint()
            kept = f"{checkpoint.name} is intact" if checkpoint else "no checkpoint was saved yet"
            message = (f"disk full while saving ({first}): free space in {run.path.parent}, then resume "
                       f"the run ({kept})")
        elif "out of memory" in first.lower():
            message = ("out of memory: lower per_device_train_batch_size or max_seq_length, "
                       "or set load_in_4bit: true")
        else:
            message = f"{type(e).__name__}: {first} (see log.txt)"
        run.set_status(status="failed", error=message)
    return "failed"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="ftspace.engine.worker")
    parser.add_argument("run_dir")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    distributed.setup()  # several processes (torchrun): join their group
    run = distributed.run_for_this_process(Path(args.run_dir).resolve())
    return 0 if execute(run, resume=args.resume) == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
