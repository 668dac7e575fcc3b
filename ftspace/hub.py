"""Share a run on the Hub: model card, adapter push, optional merged 16-bit model and GGUF export, zip download.

Tokens are used for the request only: never written to disk, logs, cards or returned. Every call
honours HF_ENDPOINT (huggingface_hub reads it), so tests push to a fake Hub on 127.0.0.1.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from ftspace.access import HUB_ID, validate_repo_name
from ftspace.errors import HubError
from ftspace.models import hub_id_for
from ftspace.runs import Run, duration_shown, training_seconds

HUB_TIMEOUT_S = float(os.environ.get("FTSPACE_HUB_TIMEOUT", 120))


def _base_model_id(run: Run) -> str:
    """The base model as a Hub id (the bundled default maps to the checkpoint it was made from)."""
    return hub_id_for(run.config().model_name)


def loss_curve_png(run: Run) -> bytes | None:
    """A PNG of the training loss (and the validation loss, where there is one) against the step, with labelled
    axes and a legend of the lines drawn, by Pillow (no matplotlib needed)."""
    from PIL import Image, ImageDraw

    events, _ = run.events()
    train = [(e["step"], e["loss"]) for e in events if "loss" in e]
    evals = [(e["step"], e["eval_loss"]) for e in events if "eval_loss" in e]
    if not train:
        return None
    w, h, left, right, top, bottom = 640, 340, 64, 20, 34, 48
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    points = train + evals
    max_step = max(s for s, _ in points) or 1
    lo, hi = min(v for _, v in points), max(v for _, v in points)
    lo, hi = (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)
    grey, blue, orange = (200, 200, 200), (31, 119, 180), (255, 127, 14)

    def xy(step, value):
        return (left + (w - left - right) * step / max_step,
                h - bottom - (h - top - bottom) * (value - lo) / (hi - lo))

    for i in range(5):  # loss ticks, with light grid lines
        value = lo + (hi - lo) * i / 4
        _, y = xy(0, value)
        draw.line([(left, y), (w - right, y)], fill=grey)
        draw.text((6, y - 6), f"{value:.3g}", fill="black")
    for i in range(5):  # step ticks
        step = round(max_step * i / 4)
        x, _ = xy(step, lo)
        draw.line([(x, h - bottom), (x, h - bottom + 4)], fill="black")
        draw.text((x - 8, h - bottom + 8), str(step), fill="black")
    draw.line([(left, top), (left, h - bottom), (w - right, h - bottom)], fill="black")
    draw.text(((w - left) // 2 + left - 12, h - 18), "step", fill="black")
    draw.text((6, 8), "loss", fill="black")
    legend = [("training loss", blue)] + ([("validation loss", orange)] if evals else [])
    x = w - right - 150 * len(legend)
    for label, colour in legend:
        draw.line([(x, 14), (x + 20, 14)], fill=colour, width=3)
        draw.text((x + 26, 8), label, fill="black")
        x += 150
    if len(train) > 1:
        draw.line([xy(s, v) for s, v in train], fill=blue, width=2)
    else:
        x0, y0 = xy(*train[0])
        draw.ellipse([x0 - 3, y0 - 3, x0 + 3, y0 + 3], fill=blue)
    for s, v in evals:
        x0, y0 = xy(s, v)
        draw.ellipse([x0 - 4, y0 - 4, x0 + 4, y0 + 4], fill=orange)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def dataset_label(dataset: str) -> tuple[str, str | None]:
    """How a card names a run's dataset: (what to show, its Hub id if it is one). A local file or an
    upload is named by its file name only: no path of the server that trained it is ever published.

    >>> dataset_label("/tmp/app/uploads/3f2a/heldout_qa.csv")
    ('heldout_qa.csv', None)
    >>> dataset_label("example:facts"), dataset_label("tatsu-lab/alpaca")
    (('facts (ftspace example)', None), ('tatsu-lab/alpaca', 'tatsu-lab/alpaca'))
    """
    if dataset.startswith("example:"):
        return dataset.split(":", 1)[1] + " (ftspace example)", None
    if Path(dataset).exists() or dataset.startswith((".", "/", "~")) or not HUB_ID.match(dataset):
        return Path(dataset).name, None
    return dataset, dataset


METHOD_NAMES = {"sft": "SFT (supervised fine-tuning on the replies)",
                "dpo": "DPO (direct preference optimization: chosen over rejected replies)",
                "orpo": "ORPO (odds-ratio preference optimization: chosen over rejected replies)",
                "grpo": "GRPO (group relative policy optimization: learned by reward from its own replies)"}


def _reward_shown(spec: str) -> str:
    """A reward as a card names it: a custom reward's file by its name only (no path of the machine is published).

    >>> _reward_shown("custom:/home/me/rewards.py:shaped:2")
    'custom:rewards.py:shaped:2'
    """
    if not spec.startswith("custom:"):
        return spec
    where, _, rest = spec.removeprefix("custom:").partition(".py:")
    return f"custom:{Path(where + '.py').name}:{rest}"


def rewards_line(cfg, st: dict) -> str:
    """A GRPO run's rewards with their weights, and the mean reward its last step earned (the card, the CLI)."""
    from ftspace.rewards import parse

    chosen = ", ".join(f"{_reward_shown(name)} (x{weight:g})" for name, weight in parse(cfg.rewards))
    last = st.get("reward")
    return f"- Rewards: {chosen}" + (f"; mean reward at the last step: {last:.3f}" if isinstance(last, float) else "")


KEY_SETTINGS = ("lora_r", "lora_alpha", "learning_rate", "max_steps", "num_train_epochs", "per_device_train_batch_size",
                "gradient_accumulation_steps", "max_seq_length", "load_in_4bit", "seed")
METHOD_SETTINGS = {"dpo": ("preference_beta",), "orpo": ("preference_beta",),
                   "grpo": ("num_generations", "max_completion_length", "beta")}


def shown_config(run: Run) -> dict:
    """The run's settings as a card publishes them (its config.yaml): the data, test data and custom rewards by file
    name, the base model by Hub id; never a path of the machine that trained it."""
    cfg = run.config()
    return dict(cfg.to_dict(), dataset=dataset_label(cfg.dataset)[0], model_name=_base_model_id(run),
                test_dataset=dataset_label(cfg.test_dataset)[0] if cfg.test_dataset else "",
                rewards=[_reward_shown(r) for r in cfg.rewards])


def model_card(run: Run, repo_id: str, gguf_repo: str | None = None, gguf_type: str | None = None) -> str:
    """README.md for the pushed repo: front matter the Hub reads (base model, licence, datasets, and a `model-index`
    scorecard when the run was evaluated), a summary of how it was made, its scores or a neutral line, intended use
    and limits, how to use it (PEFT; llama.cpp and Ollama when a GGUF repo goes with it), and the training details
    (the full configuration is the repo's config.yaml)."""
    import yaml

    from ftspace.engine.prepare import read_prepared
    from ftspace.models import license_of

    cfg, st = run.config(), run.status()
    base, name = _base_model_id(run), repo_id.split("/")[-1]
    data_name, data_id = dataset_label(cfg.dataset)
    licence = license_of(cfg.model_name)
    scored = run.published_scorecard(st)
    meta = {"base_model": base, "library_name": "peft", "pipeline_tag": "text-generation"}
    if licence:
        meta["license"] = licence
    meta["tags"] = ["unsloth", "trl", cfg.method, "lora", "ftspace"]
    if data_id:
        meta["datasets"] = [data_id]
    if scored:
        meta["model-index"] = _model_index(name, scored)
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip()
    info = read_prepared(run) or {}
    rows = f"{info['train_rows']} training rows" if info.get("train_rows") else ""
    if rows and info.get("general_rows"):
        rows += f" ({info['general_rows']} of them general rows mixed in to keep what the base knew)"
    train_loss, eval_loss = st.get("train_loss"), st.get("eval_loss")
    summary = [("Method", METHOD_NAMES[cfg.method]), ("Base model", f"[{base}](https://huggingface.co/{base})"),
               ("Data", data_name + (f": {rows}" if rows else "")),
               ("Training", _training_line(cfg, st)),
               ("Final train loss", f"{train_loss:.4f}" if isinstance(train_loss, float) else "n/a"),
               ("Final validation loss", f"{eval_loss:.4f}" if isinstance(eval_loss, float)
                else "n/a (no validation split)")]
    if cfg.method == "grpo":
        summary.append(("Rewards", rewards_line(cfg, st).removeprefix("- Rewards: ")))
    table = "\n".join(f"| {k} | {v} |" for k, v in summary)
    return f"""---
{front}
---

# {name}

A LoRA adapter for [{base}](https://huggingface.co/{base}), fine-tuned with
[Unsloth](https://github.com/unslothai/unsloth) and TRL using ftspace: method **{METHOD_NAMES[cfg.method]}**.

| | |
| --- | --- |
{table}

![Training loss by step](loss_curve.png)

{_evaluation_section(run, st, scored)}

## Intended use and limits

{_limits(cfg, st, scored, data_name, licence, base)}

## Use it

{_usage(base, repo_id, gguf_repo, gguf_type)}

## Training details

{_details(run, cfg, st)}
"""


def _training_line(cfg, st: dict) -> str:
    """Steps, time, where and in what precision: "30 of 30 steps in 1 min 47 s on CPU: AMD EPYC (float32)"."""
    steps = f"{st.get('step')} of {st.get('total_steps')} steps" if st.get("total_steps") else f"{st.get('step')} steps"
    seconds = training_seconds(st)
    took = f" in {duration_shown(seconds)}" if seconds and seconds > 0 else ""
    where = st.get("hardware") or {"cuda": "a GPU", "cpu": "CPU"}.get(st.get("device"), "")
    if cfg.train_on == "hf_jobs":
        where = f"Hugging Face Jobs ({cfg.jobs_flavor})" + (f", {where}" if st.get("hardware") else "")
    elif st.get("tier"):
        where = f"ZeroGPU ({st['tier']} tier)" + (f", {where}" if st.get("hardware") else "")
    precision = f" ({st['compute_dtype']})" if st.get("compute_dtype") else ""
    return steps + took + (f" on {where}" if where else "") + precision


def _trainer_shown(cfg, st: dict) -> str:
    """The trainer as people know it: "SFTTrainer (through Unsloth)", never an internal class path (one with
    `<locals>` in it would be swallowed by the page as an HTML tag)."""
    cls = (st.get("trainer_class") or "").rsplit(".", 1)[-1] or "n/a"
    backend = st.get("backend", cfg.backend)
    return f"{cls} (TRL, through Unsloth)" if backend == "unsloth" else f"{cls} (TRL with transformers and PEFT)"


def _model_index(name: str, card: dict) -> list[dict]:
    """The scorecard as the Hub's `model-index` metadata: the task metric on the test rows and the general
    probe's accuracy, each for the tuned adapter and its base."""
    from ftspace.evaluation.showing import METRIC_NAMES

    def metrics(scores: dict, key: str, label: str) -> list[dict]:
        return [{"type": key, "value": round(float(scores[side][key]), 4), "name": f"{label} ({side})"}
                for side in ("tuned", "base") if isinstance(scores.get(side, {}).get(key), (int, float))]

    primary = card["primary_metric"]
    source = card["test"]["source"]
    test = {"task": {"type": "text-generation", "name": card["task"]},
            "dataset": {"name": f"{source} ({card['test']['rows']} test rows)",
                        "type": dataset_label(source)[1] or "custom"},
            "metrics": metrics(card, primary, METRIC_NAMES[primary])}
    f = card["forgetting"]
    probe = {"task": {"type": "text-generation", "name": "general questions (what the base knew)"},
             "dataset": {"name": f"{card.get('probe_source', 'general probe')}: {f['questions']} questions",
                         "type": "custom"},
             "metrics": metrics({"tuned": {"accuracy": f["tuned"]}, "base": {"accuracy": f["base"]}}, "accuracy",
                                "probe accuracy")}
    return [{"name": name, "results": [r for r in (test, probe) if r["metrics"]]}]


def _limits(cfg, st: dict, scored: dict | None, data_name: str, licence: str, base: str) -> str:
    lines = [f"- Made to answer as its training data ({data_name}) does; outside what those rows show, expect the "
             "base model's behaviour at best.",
             "- It can be wrong or make things up, as its base can: check what it says before relying on it."]
    if scored and scored["forgetting"].get("warning"):
        lines.append(f"- ⚠️ {scored['forgetting']['warning']}")
    elif scored:
        lines.append(f"- General answers: {scored['forgetting']['questions']} general questions were asked before "
                     f"publishing ({scored['forgetting']['base']:.3f} right for the base, "
                     f"{scored['forgetting']['tuned']:.3f} for this adapter).")
    else:
        lines.append("- Whether training cost it general answers was not measured before publishing.")
    lines.append(f"- Licence: {licence}, inherited from the base model." if licence else
                 f"- Licence: the base model's ([{base}](https://huggingface.co/{base})) applies to this derivative.")
    return "\n".join(lines)


def _usage(base: str, repo_id: str, gguf_repo: str | None, gguf_type: str | None) -> str:
    text = f"""With transformers and PEFT:

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base = AutoModelForCausalLM.from_pretrained("{base}")
model = PeftModel.from_pretrained(base, "{repo_id}")
tokenizer = AutoTokenizer.from_pretrained("{repo_id}")

messages = [{{"role": "user", "content": "Hello!"}}]
inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
output = model.generate(**inputs, max_new_tokens=128)
print(tokenizer.decode(output[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```"""
    if gguf_repo and gguf_type:
        kind = gguf_type.upper()
        text += f"""

Merged into its base and written as GGUF ({gguf_type}) in [{gguf_repo}](https://huggingface.co/{gguf_repo}), checked
against this adapter before upload:

```
ollama run hf.co/{gguf_repo}:{kind}
llama-cli -hf {gguf_repo}:{kind} -cnv --jinja
```"""
    return text


def _details(run: Run, cfg, st: dict) -> str:
    from dataclasses import fields

    from ftspace.config import RunConfig

    labels = {f.name: f.metadata.get("label") or f.name for f in fields(RunConfig)}
    shown = shown_config(run)
    keys = [k for k in KEY_SETTINGS + METHOD_SETTINGS.get(cfg.method, ())
            if not (k == "max_steps" and shown[k] in (-1, None)) and not (k == "num_train_epochs" and
                                                                          shown.get("max_steps", -1) > 0)]
    table = "\n".join(f"| {labels[k]} (`{k}`) | {_value(shown[k])} |" for k in keys)
    lines = [f"- Trainer: {_trainer_shown(cfg, st)}"]
    if st.get("versions"):
        lines.append(f"- Libraries: {st['versions']}")
    lines.append(f"- ftspace run `{run.id}`; every setting is in [config.yaml](config.yaml) (the dataset named by "
                 "its file, the base model by its Hub id).")
    return "\n".join(lines) + "\n\n| setting | value |\n| --- | --- |\n" + table


def _value(value) -> str:
    """
    >>> _value(["correct_answer", "length:0.5"]), _value(""), _value(0.0005), _value(True)
    ('correct_answer, length:0.5', '(none)', '0.0005', 'yes')
    """
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "(none)"
    return "(none)" if value in ("", None) else f"{value:g}" if isinstance(value, float) else str(value)


def _evaluation_section(run: Run, st: dict, card: dict | None) -> str:
    """The scorecard of the adapter being published (base vs tuned, the forgetting probe, which checkpoint)
    and a hash of the rows it was trained on: evidence, not only settings. `card`: that scorecard
    (Run.published_scorecard)."""
    from ftspace import evaluation
    from ftspace.engine.prepare import read_prepared

    label = st.get("adapter_checkpoint") or "final"
    info = read_prepared(run) or {}
    lines = ["## Evaluation", ""]
    if card:
        lines.append(evaluation.summary(card))
    else:
        lines.append("Not evaluated with ftspace before publishing: no scores are claimed here.")
    lines += ["", f"- Adapter published: {label}" + (f" (step {card['adapter_step']})" if card and
                                                      card.get("adapter_step") else "")]
    if info.get("train_sha256"):
        mixed = f", including {info['general_rows']} general rows mixed in" if info.get("general_rows") else ""
        lines.append(f"- Training data: {info['train_rows']} rows{mixed}, sha256 of the converted rows "
                     f"`{info['train_sha256']}`")
    return "\n".join(lines)


def staged_adapter(run: Run, repo_id: str, gguf_repo: str | None = None, gguf_type: str | None = None) -> Path:
    """A temporary folder with the adapter, its card and loss curve, base model named by Hub id."""
    if not (run.adapter_dir / "adapter_config.json").exists():
        raise HubError(f"Run {run.id} has no finished adapter to push yet: wait for it to complete.")
    stage = Path(tempfile.mkdtemp(prefix="ftspace-push-"))
    for item in run.adapter_dir.iterdir():
        if item.is_file():
            shutil.copy2(item, stage / item.name)
    config = json.loads((stage / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = _base_model_id(run)  # a Hub id, not this machine's cache path
    (stage / "adapter_config.json").write_text(json.dumps(config, indent=2))
    (stage / "README.md").write_text(model_card(run, repo_id, gguf_repo, gguf_type), encoding="utf-8")
    import yaml

    (stage / "config.yaml").write_text(yaml.safe_dump(shown_config(run), sort_keys=False, allow_unicode=True),
                                       encoding="utf-8")
    png = loss_curve_png(run)
    if png:
        (stage / "loss_curve.png").write_bytes(png)
    return stage


def push(run: Run, repo: str, token: str | None, private: bool = False, merged: bool = False,
         gguf: str | None = None) -> str:
    """Push the run's adapter (and optionally a merged 16-bit model as REPO-merged, and a GGUF export of type
    `gguf` as REPO-GGUF, laid out as llama.cpp and Ollama pull it); returns the adapter repo's URL. The GGUF is
    exported and checked against the run before any repo is created: an export that fails creates nothing."""
    import httpx
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    repo = validate_repo_name(repo)
    require_token(token)
    _bounded_requests()
    api = HfApi(token=token)
    stage = exported = None
    try:
        if "/" not in repo:
            repo = f"{api.whoami()['name']}/{repo}"
        if gguf:
            from ftspace import offload  # exporting imports transformers: not in a ZeroGPU app process

            exported = Path(tempfile.mkdtemp(prefix="ftspace-gguf-"))
            report = offload.call("ftspace.export:gguf_into", run_dir=str(run.path), quant=gguf,
                                  out_dir=str(exported), token=token)
        url = api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
        stage = staged_adapter(run, repo, f"{repo}-GGUF" if gguf else None, gguf)
        api.upload_folder(folder_path=str(stage), repo_id=repo,
                          commit_message=f"Upload adapter from ftspace run {run.id}")
        if merged:  # its own repo, so it loads by id with plain transformers
            merged_repo = f"{repo}-merged"
            api.create_repo(merged_repo, private=private, exist_ok=True, repo_type="model")
            from ftspace import offload  # merging imports transformers: not in a ZeroGPU app process

            merged_dir = Path(offload.call("ftspace.hub:merge_into", run_dir=str(run.path),
                                           out_dir=str(stage / "merged"), token=token))
            (merged_dir / "README.md").write_text(model_card(run, merged_repo).replace(
                "library_name: peft", "library_name: transformers"))
            api.upload_folder(folder_path=str(merged_dir), repo_id=merged_repo,
                              commit_message=f"Upload merged 16-bit model from ftspace run {run.id}")
        if gguf:
            gguf_repo = f"{repo}-GGUF"
            api.create_repo(gguf_repo, private=private, exist_ok=True, repo_type="model")
            api.upload_folder(folder_path=str(gguf_layout(run, report, exported, gguf_repo, repo)),
                              repo_id=gguf_repo, commit_message=f"Upload {gguf} GGUF from ftspace run {run.id}")
        return str(url)
    except HfHubHTTPError as e:
        raise _failed(repo, _http_reason(e), token) from None
    except httpx.TimeoutException as e:
        raise _failed(repo, f"the Hub did not answer within {HUB_TIMEOUT_S:g} s ({type(e).__name__}): check the "
                            "connection and try again.", token) from None
    except httpx.TransportError as e:
        raise _failed(repo, f"cannot reach the Hub ({type(e).__name__}: {e}): check the connection and try "
                            "again.", token) from None
    except (OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise _failed(repo, f"{type(e).__name__}: {first}; try again.", token) from None
    finally:
        for folder in (stage, exported):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)


def gguf_layout(run: Run, report: dict, folder: Path, gguf_repo: str, adapter_repo: str) -> Path:
    """An export folder laid out as a GGUF repo on the Hub: files at the root, the type in the file name (what
    `ollama run hf.co/USER/REPO:Q8_0` and `llama-cli -hf USER/REPO:Q8_0` look for), a card with the usage and the
    parity figures, the base model and the adapter linked. `folder`, changed in place."""
    from ftspace.export import parity_lines

    kind = report["type"].upper()
    name = f"{gguf_repo.split('/')[-1]}-{kind}.gguf"
    (folder / report["file"]).rename(folder / name)
    if (folder / "Modelfile").exists():
        modelfile = (folder / "Modelfile").read_text(encoding="utf-8")
        (folder / "Modelfile").write_text(modelfile.replace(f"FROM ./{report['file']}", f"FROM ./{name}", 1),
                                          encoding="utf-8")
    base = _base_model_id(run)
    lines = ["---", f"base_model: {base}", "library_name: gguf", "tags:", "- gguf", "- ftspace", "- llama.cpp",
             "- ollama", "---", "", f"# {gguf_repo.split('/')[-1]}", "",
             f"[{adapter_repo}](https://huggingface.co/{adapter_repo}) (a LoRA adapter trained with ftspace, run "
             f"{run.id}) merged into [{base}](https://huggingface.co/{base}) and written as GGUF ({report['type']}), "
             "with the run's chat template, stop tokens and sampling defaults.", "", "## Run it", "", "```",
             f"ollama run hf.co/{gguf_repo}:{kind}", f"llama-cli -hf {gguf_repo}:{kind} -cnv --jinja",
             f"llama-server -hf {gguf_repo}:{kind} --jinja", "```", "",
             f"LM Studio: search for `{gguf_repo}` in its model browser, or `lms get {gguf_repo}`.", "",
             "## Checked against the run", "",
             "Before upload, the file was read back and compared with the tuned model on the same prompts:", ""]
    lines += [f"- {line}" for line in parity_lines(report["parity"], report.get("ollama"))]
    (folder / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def require_token(token: str | None):
    """A push needs a token; on a shared app, the visitor's own (ftspace.access.hub_token never hands
    them the server's), so a signed-out visitor is asked to sign in."""
    if token:
        return
    from ftspace.env import multi_user

    if multi_user():  # a visitor of a shared app: only their own account can be written to
        raise HubError("Sign in with Hugging Face (the button above) to push: the adapter goes to your own "
                       "account, with your own permission. Nothing was created.")
    raise HubError("No Hugging Face token: set HF_TOKEN, run `hf auth login`, or paste a token with write "
                   "access.")


_timeout_installed: float | None = None


def _bounded_requests():
    """huggingface_hub's HTTP client waits forever by default; a Hub that stops answering part way
    through a push must fail it instead. Each network step (connect, send, receive) gets HUB_TIMEOUT_S."""
    global _timeout_installed
    if _timeout_installed == HUB_TIMEOUT_S:
        return
    import httpx
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils._http import default_client_factory

    seconds = HUB_TIMEOUT_S

    def bounded_client() -> httpx.Client:  # huggingface_hub's own client, only the timeout changed
        client = default_client_factory()
        client.timeout = httpx.Timeout(seconds)
        return client

    set_client_factory(bounded_client)
    _timeout_installed = seconds


def _http_reason(e) -> str:
    status = getattr(getattr(e, "response", None), "status_code", None)
    if status == 401:
        return "the token was refused (401): check that it is valid and has write access."
    if status == 403:
        return "permission denied (403): the token cannot write to this namespace."
    if status == 409:
        return "a conflicting repository exists (409): pick another name."
    if status and status >= 500:
        return f"the Hub had a server error ({status}): try again in a moment."
    return f"the Hub refused the request ({status}): {str(e).splitlines()[0]}"


def _failed(repo: str, reason: str, token: str) -> HubError:
    """One line for every failed push: the repo, what happened, and that nothing local changed."""
    return HubError(_scrub(f"Push to {repo} failed: {reason} The local adapter is unchanged.", token))


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def merge(run: Run, out_dir: Path, token: str | None = None) -> Path:
    """Base + adapter merged into one 16-bit checkpoint (loads with plain transformers)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftspace.models import compute_placement

    from ftspace.evaluation import base_for

    base_path = base_for(run.adapter_dir, token)  # a Hub id fetched with the caller's token, never the server's
    device, dtype = compute_placement()
    # 16-bit out: the compute dtype where it is 16-bit (a GPU, a CPU with bfloat16 units); else float16
    # (merging is a sum, exact enough)
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype if dtype != torch.float32 else torch.float16,
                                                 device_map={"": device})
    model = PeftModel.from_pretrained(model, str(run.adapter_dir)).merge_and_unload()
    model.save_pretrained(out_dir, safe_serialization=True)
    AutoTokenizer.from_pretrained(run.adapter_dir).save_pretrained(out_dir)
    return out_dir


def merge_into(run_dir: str, out_dir: str, token: str | None = None) -> str:
    """`merge` by paths (JSON in and out, for ftspace.offload)."""
    return str(merge(Run(Path(run_dir)), Path(out_dir), token))


def adapter_zip(run: Run) -> bytes:
    """The adapter folder (with card and loss curve) as a zip, for download."""
    stage = staged_adapter(run, f"ftspace/{run.id}")
    try:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            for item in sorted(stage.iterdir()):
                zf.write(item, f"{run.id}-adapter/{item.name}")
        return out.getvalue()
    finally:
        shutil.rmtree(stage, ignore_errors=True)
