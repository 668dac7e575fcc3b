"""A bare training script, as a user would write it from the libraries' docs: the baseline that
ftspace's engine is measured against. `--engine unsloth` (FastLanguageModel) or `--engine trl`
(transformers + PEFT + TRL). Prints one JSON line: tokens seen, train runtime, peak RSS / VRAM."""

import argparse
import json
import sys

from ftspace.memory import peak_rss_mb


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--engine", choices=["unsloth", "trl"], required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="JSONL of {messages: [...]}")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--load-in-4bit", action="store_true")
    p.add_argument("--seed", type=int, default=3407)
    a = p.parse_args()

    if a.engine == "unsloth":
        from unsloth import FastLanguageModel  # before transformers, as Unsloth asks

        model, tokenizer = FastLanguageModel.from_pretrained(a.model, max_seq_length=a.max_len,
                                                             load_in_4bit=a.load_in_4bit, dtype=None)
        model = FastLanguageModel.get_peft_model(model, r=16, lora_alpha=32, lora_dropout=0.0,
                                                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                 "gate_proj", "up_proj", "down_proj"],
                                                 use_gradient_checkpointing=False, random_state=a.seed)
    import torch
    from datasets import load_dataset
    from trl import SFTConfig, SFTTrainer

    if a.engine == "trl":
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ftspace.engine import cpu_loss

        if not torch.cuda.is_available():
            cpu_loss.install()  # TRL 1.15's loss kernel is CUDA-only; same fix ftspace applies
        tokenizer = AutoTokenizer.from_pretrained(a.model)
        model = AutoModelForCausalLM.from_pretrained(
            a.model, dtype=torch.bfloat16 if torch.cuda.is_available() else torch.float32,
            device_map={"": 0} if torch.cuda.is_available() else None)
        torch.manual_seed(a.seed)
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                                                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                 "gate_proj", "up_proj", "down_proj"]))
    data = load_dataset("json", data_files=a.data, split="train")
    on_gpu = torch.cuda.is_available()
    args = SFTConfig(output_dir="/tmp/ftspace-bench-bare", max_steps=a.steps, per_device_train_batch_size=a.batch,
                     gradient_accumulation_steps=1, learning_rate=1e-3, max_length=a.max_len, seed=a.seed,
                     logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
                     include_num_input_tokens_seen="non_padding", optim="adamw_torch", use_cpu=not on_gpu,
                     bf16=on_gpu and torch.cuda.is_bf16_supported(), gradient_checkpointing=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    metrics = trainer.train().metrics
    out = {"tokens": trainer.state.num_input_tokens_seen, "train_runtime_s": metrics["train_runtime"],
           "peak_rss_mb": peak_rss_mb(),  # this process's own, measured as ftspace's worker measures it
           "peak_vram_mb": torch.cuda.max_memory_allocated() / 2**20 if on_gpu else None}
    out["tokens_per_s"] = out["tokens"] / out["train_runtime_s"]
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
