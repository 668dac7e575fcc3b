import re
from pathlib import Path

import pytest

from ftspace.config import RunConfig, options_table
from ftspace.schema import parse_overrides
from ftspace.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_yaml_keys_work_as_written(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model_name: unsloth/Qwen3-0.6B\ndataset: data.jsonl\nmax_steps: 60\nlearning_rate: 1e-4\n"
                    "lora_r: 32\nlora_alpha: 64\nper_device_train_batch_size: 4\nmax_seq_length: 2048\n"
                    "backend: hf\n")
    cfg = RunConfig.from_yaml(path)
    assert (cfg.model_name, cfg.dataset, cfg.max_steps, cfg.learning_rate, cfg.lora_r, cfg.lora_alpha,
            cfg.per_device_train_batch_size, cfg.max_seq_length, cfg.backend) == (
        "unsloth/Qwen3-0.6B", "data.jsonl", 60, 1e-4, 32, 64, 4, 2048, "hf")


def test_overrides_are_typed_and_win(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("max_steps: 10\n")
    cfg = RunConfig.from_yaml(path, ["max_steps=20", "packing=true", "target_modules=q_proj,v_proj"])
    assert cfg.max_steps == 20 and cfg.packing is True and cfg.target_modules == ["q_proj", "v_proj"]


def test_resolved_config_round_trips(tmp_path):
    cfg = RunConfig(lora_r=8, dataset="example:chat", validation_size=0.2, eval_steps=5)
    path = tmp_path / "r.yaml"
    path.write_text(cfg.to_yaml())
    assert RunConfig.from_yaml(path) == cfg


@pytest.mark.parametrize("values, field, fix", [
    ({"lora_r": 0}, "lora_r", "from 1 to 1024"),
    ({"learning_rate": "fast"}, "learning_rate", "2e-4"),
    ({"backend": "tensorflow"}, "backend", "auto, unsloth, hf"),
    ({"max_steps": 0}, "max_steps", "-1"),
    ({"packing": "maybe"}, "packing", "true or false"),
    ({"per_device_train_batch_size": 2.5}, "per_device_train_batch_size", "whole number"),
    ({"early_stopping_patience": 2}, "early_stopping_patience", "validation_size"),
    ({"eval_steps": 10}, "eval_steps", "validation_size"),
    ({"dataset_format": "columns", "prompt_column": "q"}, "dataset_format 'columns'", "response_column"),
    ({"validation_size": 2.5}, "validation_size", "whole number"),
    ({"validation_size": -0.5}, "validation_size", "-1 for automatic"),
    ({"lora_dropout": 1.5}, "lora_dropout", "from 0 to 0.9"),
])
def test_invalid_values_name_the_field_and_the_fix(values, field, fix):
    with pytest.raises(ConfigError) as e:
        RunConfig.from_dict(values)
    assert field in str(e.value) and fix in str(e.value)


def test_unknown_field_suggests_the_right_name():
    with pytest.raises(ConfigError, match="Did you mean 'lora_r'"):
        RunConfig.from_dict({"lora_rank": 8})


def test_bad_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("lora_r: [1,\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        RunConfig.from_yaml(path)
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        RunConfig.from_yaml(tmp_path / "missing.yaml")


def test_override_syntax_error():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["max_steps"])


def test_the_documented_option_table_is_generated_from_runconfig():
    page = (ROOT / "docs" / "configuration.md").read_text()
    block = re.search(r"<!-- options:start -->\n(.*?)\n<!-- options:end -->", page, re.S)
    assert block, "docs/configuration.md lacks the generated options table"
    assert block.group(1).strip() == options_table().strip(), "run `make docs` to regenerate docs/configuration.md"


def test_example_configs_agree_with_their_presets():
    from ftspace.config import PRESETS

    configs = sorted((ROOT / "examples").glob("*.yaml"))
    assert configs
    for path in configs:
        named = re.search(r"^# preset: (.+?)(?:\s{2,}|\s*\(|$)", path.read_text(), re.M)
        assert named and named.group(1) in PRESETS, f"{path.name}: name its preset in a '# preset: NAME' line"
        cfg = RunConfig.from_yaml(path).to_dict()
        preset = PRESETS[named.group(1)]
        assert {k: cfg[k] for k in preset} == preset, path.name


def test_presets_are_valid_configs():
    from ftspace.config import PRESETS

    for name, values in PRESETS.items():
        RunConfig(**values)  # a preset that breaks a bound or a combination fails here


def test_every_field_has_a_label_for_people():
    """The app shows "LoRA rank · lora_r": a human label from the schema, then the key (YAML, flags, API)."""
    from dataclasses import fields

    from ftspace.config import GenerationSettings
    from ftspace.data.create.settings import CreateSettings

    for schema in (RunConfig, GenerationSettings, CreateSettings):
        labels = [f.metadata["label"] for f in fields(schema)]
        assert all(labels) and len(set(labels)) == len(labels), schema.__name__
