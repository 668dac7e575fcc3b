"""Preference tuning: DPO and ORPO train the tiny model through the same worker, checkpoints, events and card."""

import json
import math

import pytest

from ftspace.targets import local
from tests.test_engine import resume_to_the_end, stopped_after, tiny_config

PAIRS = [("Capital of France?", "Paris.", "Berlin."), ("2+2?", "4", "5"), ("Colour of the sky?", "Blue.", "Green."),
         ("Largest planet?", "Jupiter.", "Mars."), ("Legs on a spider?", "Eight.", "Six."),
         ("Opposite of hot?", "Cold.", "Warm."), ("Water freezes at?", "0 degrees Celsius.", "50 degrees Celsius."),
         ("First letter of the alphabet?", "A.", "Z.")]


@pytest.fixture
def preference_file(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n" for p, c, r in PAIRS))
    return path


def margins(tiny_model, adapter_dir, path):
    """Mean log-probability of the chosen reply minus the rejected one, base (adapter off) and tuned."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftspace.data import load_dataset
    from ftspace.engine.prepare import preference_texts

    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(adapter_dir)).eval()
    rows, _ = load_dataset(str(path), method="dpo")

    def logp(prompt: str, reply: str) -> float:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        full = tokenizer(prompt + reply, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([full])
        with torch.no_grad():
            logits = model(ids).logits[0, :-1].float().log_softmax(-1)
        targets = ids[0, 1:]
        picked = logits.gather(-1, targets[:, None])[:, 0]
        return float(picked[len(p) - 1:].sum())

    out = {}
    for name, off in (("base", True), ("tuned", False)):
        values = []
        for row in rows:
            texts = preference_texts(tokenizer, row)
            if off:
                with model.disable_adapter():
                    values.append(logp(texts["prompt"], texts["chosen"]) - logp(texts["prompt"], texts["rejected"]))
            else:
                values.append(logp(texts["prompt"], texts["chosen"]) - logp(texts["prompt"], texts["rejected"]))
        out[name] = sum(values) / len(values)
    return out


def test_dpo_grows_the_chosen_replies_margin_and_resumes(tiny_model, runs_dir, preference_file):
    cfg = tiny_config(tiny_model, dataset=str(preference_file), method="dpo", max_steps=16, save_steps=4,
                      learning_rate=5e-3, validation_size=2, eval_steps=8, backend="auto")
    run, _ = local.start(cfg)
    st = stopped_after(run, 5)
    log = run.log_path.read_text()
    assert "Unsloth's CPU path trains SFT only: dpo runs on TRL's trainer" in log
    assert st["trainer_class"].endswith("DPOTrainer")
    resume_to_the_end(run, total=16)
    st = run.status()
    events, _ = run.events()
    steps = [e for e in events if "loss" in e]
    assert all("reward_margin" in e and "reward_accuracy" in e for e in steps)
    assert any("eval_reward_margin" in e for e in events)
    m = margins(tiny_model, run.adapter_dir, preference_file)
    # the chosen replies gained on the rejected ones (measured: +0.66 nats per row, base 2.78 -> tuned 3.44)
    assert m["tuned"] > m["base"] + 0.25, m
    assert steps[-1]["reward_margin"] > steps[0]["reward_margin"]
    assert math.isfinite(m["base"])

    from ftspace.hub import model_card

    card = model_card(run, "alice/prefs")
    assert "method **DPO" in card and "DPOTrainer" in card and "- dpo" in card


def test_orpo_trains_and_logs_reward_accuracy(tiny_model, runs_dir, preference_file):
    run, _ = local.start(tiny_config(tiny_model, dataset=str(preference_file), method="orpo", max_steps=3,
                                    backend="hf"))
    st = run.wait(timeout=300)
    assert st["status"] == "completed", run.log_path.read_text()[-3000:]
    assert st["trainer_class"].endswith("ORPOTrainer")
    steps = [e for e in run.events()[0] if "loss" in e]
    assert [e["step"] for e in steps] == [1, 2, 3] and all("reward_accuracy" in e for e in steps)
    assert (run.adapter_dir / "adapter_model.safetensors").exists()


def test_a_preference_method_on_sft_data_is_refused_in_one_line(tiny_model, runs_dir):
    from ftspace.errors import DataError

    with pytest.raises(DataError) as e:
        local.start(tiny_config(tiny_model, method="dpo", max_steps=2))
    assert str(e.value) == ("chat.jsonl: method dpo learns from preference rows (prompt, chosen, rejected), but this "
                            "file is messages: use a preference dataset, or set method to sft.")
    assert not runs_dir.exists() or not list(runs_dir.iterdir())  # no run was created
