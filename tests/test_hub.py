"""Push to a fake Hub on 127.0.0.1 (via HF_ENDPOINT): card, adapter files, stock PEFT load, errors."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clitools import cli as cli_in_process
from clitools import cli_process
from fakehub import FakeHub
from ftspace import access, hub, runs
from ftspace.errors import HubError
from ftspace.targets import local
from ftspace.config import RunConfig

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "hf_test_token_123456"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("hubruns")
    os.environ["FTSPACE_RUNS"] = str(root)
    try:
        run, _ = local.start(RunConfig(model_name=str(tiny_model), dataset="example:facts", max_steps=4,
                                      save_steps=10, max_seq_length=64, gradient_checkpointing=False,
                                      validation_size=4, eval_steps=2, backend="hf"))
        assert run.wait(timeout=300)["status"] == "completed", run.log_path.read_text()[-2000:]
        yield run
    finally:
        os.environ.pop("FTSPACE_RUNS", None)


def cli(*args, env=None):
    """A real process: the fake Hub's endpoint (HF_ENDPOINT) is read when huggingface_hub is imported."""
    return cli_process(*args, env=env)


def hub_env(fake, token=TOKEN):
    env = {"HF_ENDPOINT": fake.url, "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0", "FTSPACE_RUNS": str(Path(os.environ.get("FTSPACE_RUNS", "runs")))}
    if token:
        env["HF_TOKEN"] = token
    return env


def test_push_card_and_stock_peft_load(trained_run, tiny_model, tmp_path):
    with FakeHub(token=TOKEN) as fake:
        result = cli("push", str(trained_run.path), "--repo", "zorblax-adapter", env=hub_env(fake))
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.strip().endswith("tester/zorblax-adapter")
        files = fake.repos["tester/zorblax-adapter"]["files"]
        assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "loss_curve.png", "config.yaml",
                "tokenizer.json", "tokenizer_config.json"} <= set(files)
        card = files["README.md"].decode()
        meta = yaml.safe_load(card.split("---")[1])
        assert meta["base_model"] == str(tiny_model)  # a local base is named as given
        assert meta["library_name"] == "peft" and {"unsloth", "trl", "sft", "lora"} <= set(meta["tags"])
        assert "| Final validation loss | " in card and "n/a (no" not in card
        assert "| LoRA rank (`lora_r`) | 16 |" in card
        # the full configuration is a file: every setting, the base by the name it was given, no path of this machine
        config = yaml.safe_load(files["config.yaml"])
        assert config["lora_r"] == 16 and config["model_name"] == str(tiny_model) and "/" not in config["dataset"]
        assert files["loss_curve.png"].startswith(b"\x89PNG")
        assert TOKEN not in card and all(TOKEN.encode() not in v for v in files.values())

        # The pushed adapter loads with stock PEFT from the (fake) Hub.
        script = ("import sys; from peft import PeftModel; from transformers import AutoModelForCausalLM;"
                  f"m = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained({str(tiny_model)!r}),"
                  " 'tester/zorblax-adapter'); print(type(m).__name__, m.peft_config['default'].r)")
        load = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "HF_ENDPOINT": fake.url, "HF_HUB_OFFLINE": "0",
                                   "HF_HOME": str(tmp_path / "hf")})
        assert load.returncode == 0, load.stderr[-3000:]
        assert load.stdout.split() == ["PeftModelForCausalLM", "16"]


def test_card_names_the_base_model_by_hub_id(runs_dir, tmp_path):
    """The card's base_model is a Hub id: the bundled default is named by the checkpoint it was converted
    from, a model downloaded from the Hub by its id (ftspace_source.json), a folder of one's own by its path."""
    def base_model(model_name):
        card = hub.model_card(runs.create(RunConfig(model_name=model_name)), "me/x")
        assert 'PeftModel.from_pretrained(base, "me/x")' in card
        return yaml.safe_load(card.split("---")[1])["base_model"]

    assert base_model("default") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    downloaded = tmp_path / "hub-cache" / "someone--model-1b"
    downloaded.mkdir(parents=True)
    (downloaded / "ftspace_source.json").write_text(json.dumps({"hub_id": "someone/model-1b"}))
    assert base_model(str(downloaded)) == "someone/model-1b"
    own = tmp_path / "my-model"
    own.mkdir()
    assert base_model(str(own)) == str(own)


def test_the_card_says_how_it_was_made_and_what_it_is_for_without_internals(trained_run, runs_dir, tmp_path):
    """A card people can trust: the licence inherited from the base where known, the trainer as people know it
    (never an internal class path), steps, time, hardware and library versions, intended use and limits, a neutral
    line when no evaluation ran (no command for the author on the published page), and a loss image with axes."""
    from PIL import Image

    card = hub.model_card(trained_run, "me/zorblax")
    st = trained_run.status()
    assert "\n# zorblax\n" in card  # titled by the repo, not the run id
    assert "<locals>" not in card and "- Trainer: SFTTrainer (TRL with transformers and PEFT)" in card
    assert st["compute_dtype"] in ("float32", "bfloat16")  # what this CPU computes in (bfloat16 where it has units)
    assert "| Training | 4 of 4 steps in " in card and f"on {st['hardware']} ({st['compute_dtype']}) |" in card
    assert st["hardware"].startswith("CPU: ") and "- Libraries: ftspace " in card and "peft " in card
    assert "Not evaluated with ftspace before publishing: no scores are claimed here." in card
    assert "Whether training cost it general answers was not measured" in card and "ftspace eval" not in card
    assert "- Licence: the base model's" in card and "license" not in yaml.safe_load(card.split("---")[1])
    assert "| Data | facts (ftspace example): " in card and "`` " not in card and "['" not in card
    png = Image.open(io.BytesIO(hub.loss_curve_png(trained_run)))
    assert png.size == (640, 340)
    # the bundled model's licence is known: it goes into the front matter and the limits
    default = hub.model_card(runs.create(RunConfig(model_name="default")), "me/y")
    assert yaml.safe_load(default.split("---")[1])["license"] == "apache-2.0"
    assert "- Licence: apache-2.0, inherited from the base model." in default
    # pushed with a GGUF, the card says how to run it with llama.cpp and Ollama
    assert "ollama run hf.co/me/zorblax-GGUF:Q8_0" in hub.model_card(trained_run, "me/zorblax", "me/zorblax-GGUF",
                                                                      "q8_0")


@pytest.fixture
def fake_hub(monkeypatch):
    """A fake Hub for in-process calls: huggingface_hub read HF_ENDPOINT / HF_HUB_OFFLINE at import."""
    import huggingface_hub.constants as constants

    with FakeHub(token=TOKEN) as fake:
        monkeypatch.setattr(constants, "ENDPOINT", fake.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        yield fake


def test_push_without_token(trained_run, monkeypatch):
    """Refused before any Hub call, so in this process (`push` runs as a real process in the card test)."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_TOKEN_PATH", "/nonexistent-hf-home/token")  # no saved login either
    with FakeHub() as fake:
        result = cli_in_process("push", str(trained_run.path), "--repo", "x",
                                env={"HF_TOKEN": "", "HF_ENDPOINT": fake.url})
        assert fake.requests == [] and fake.repos == {}
    assert result.returncode == 2 and "No Hugging Face token" in result.stderr


@pytest.mark.parametrize("status, message", [(500, "server error (500)"), (401, "refused (401)"),
                                             (403, "permission denied (403)")])
def test_push_rejected_then_retry_succeeds(trained_run, status, message, fake_hub):
    fake = fake_hub
    before = {p.name: p.read_bytes() for p in trained_run.adapter_dir.iterdir()}
    fake.fail_next = status
    with pytest.raises(hub.HubError) as e:
        hub.push(trained_run, "tester/retry", TOKEN)
    assert message in str(e.value) and "local adapter is unchanged" in str(e.value)
    assert TOKEN not in str(e.value)
    assert {p.name: p.read_bytes() for p in trained_run.adapter_dir.iterdir()} == before
    url = hub.push(trained_run, "tester/retry", TOKEN)
    assert url.endswith("tester/retry") and "adapter_model.safetensors" in fake.repos["tester/retry"]["files"]


def test_wrong_token_is_a_clear_error(trained_run, fake_hub):
    with pytest.raises(hub.HubError, match="401"):
        hub.push(trained_run, "tester/x", "hf_wrong")
    assert "tester/x" not in fake_hub.repos


@pytest.mark.parametrize("name", ["", "has space", "ünïcode", "../up", "a/b/c", "x" * 97, "bad--dash", "end."])
def test_invalid_repo_names(name):
    with pytest.raises(hub.HubError, match="Repository name"):
        access.validate_repo_name(name)


def test_cli_refuses_repo_names_with_spaces_or_unicode_in_one_line(trained_run):
    """Refused before any Hub call, so in this process (`push` runs as a real process in the card test)."""
    with FakeHub(token=TOKEN) as fake:
        for name in ("my adapter", "adaptér"):
            result = cli_in_process("push", str(trained_run.path), "--repo", name, env=hub_env(fake))
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 2 and len(lines) == 1 and f"Repository name {name!r} is not valid" in lines[0]
        assert fake.repos == {}


def test_adapter_zip(trained_run):
    import io
    import zipfile

    names = zipfile.ZipFile(io.BytesIO(hub.adapter_zip(trained_run))).namelist()
    assert f"{trained_run.id}-adapter/adapter_model.safetensors" in names
    assert f"{trained_run.id}-adapter/README.md" in names


# --- Hub datasets, from the same fake Hub

QA = b'{"question": "Capital of Zorblax?", "answer": "Quillhaven."}\n{"question": "Capital of France?", "answer": "Paris."}\n'


def with_dataset(fake):
    fake.repos["datasets/alice/qa"] = {"private": False, "sha": "b" * 40,
                                       "files": {"data/train.jsonl": QA, "README.md": b"# qa\n"}}


def test_data_inspect_reads_a_hub_dataset(tmp_path):
    with FakeHub(token=TOKEN) as fake:
        with_dataset(fake)
        env = {**hub_env(fake), "HF_HOME": str(tmp_path / "hf")}
        result = cli("data", "inspect", "alice/qa", "--json", "--no-tokens", env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads(result.stdout)
        assert (report["source"], report["format"], report["rows_kept"]) == ("alice/qa", "pairs", 2)
        assert report["preview"][0]["messages"][1]["content"] == "Quillhaven."
        missing = cli("data", "inspect", "alice/nope", "--no-tokens", env=env)
        assert missing.returncode == 2 and "alice/nope: not found on the Hub" in missing.stderr
        offline = cli("data", "inspect", "alice/qa", "--no-tokens", env={**env, "HF_HUB_OFFLINE": "1",
                                                                          "HF_DATASETS_OFFLINE": "1",
                                                                          "HF_HOME": str(tmp_path / "empty")})
        assert offline.returncode == 2 and "Hub dataset alice/qa" in offline.stderr
        assert len(offline.stderr.strip().splitlines()) == 1


def test_train_on_a_hub_dataset(tiny_model, tmp_path, monkeypatch):
    with FakeHub(token=TOKEN) as fake:
        with_dataset(fake)
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        monkeypatch.setenv("FTSPACE_RUNS", str(tmp_path / "runs"))
        run, _ = local.start(RunConfig(model_name=str(tiny_model), dataset="alice/qa", dataset_split="train",
                                      max_steps=2, max_seq_length=64, gradient_checkpointing=False, backend="hf"))
        st = run.wait(timeout=300)
        assert st["status"] == "completed", run.log_path.read_text()[-3000:]
        assert "alice/qa: format pairs, 2 rows read, 2 kept" in run.log_path.read_text()
        card = hub.model_card(run, "tester/x")
        assert yaml.safe_load(card.split("---")[1])["datasets"] == ["alice/qa"]


def test_a_4bit_run_of_a_catalogue_model_fetches_its_prequantized_release_on_the_cpu(tiny_model, tmp_path):
    """load_in_4bit with a catalogue model: preparing the run (on the CPU, before any GPU call on ZeroGPU) downloads
    the model's pre-quantized release, which the training call then loads as it is; the 16-bit weights are never
    asked for. (The fake's repo holds the tiny model's files under the 4-bit release's name; a real process, as
    huggingface_hub reads its endpoint at import.)"""
    from ftspace.models import weights_for

    release = weights_for("unsloth/Qwen3-0.6B", True)
    code = ("import json; from ftspace import runs; from ftspace.config import RunConfig; "
            "from ftspace.engine.prepare import prepare; said = []; "
            "run = runs.create(RunConfig(model_name='unsloth/Qwen3-0.6B', load_in_4bit=True, dataset='example:chat', "
            "max_steps=2, max_seq_length=64)); info = prepare(run, None, log=said.append); "
            "print(json.dumps([info['model_path'], info['train_rows'], said]))")
    with FakeHub(token=TOKEN) as fake:
        fake.repos[release] = {"private": False, "sha": "5" * 40,
                               "files": {p.name: p.read_bytes() for p in Path(tiny_model).iterdir() if p.is_file()}}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                             env={**os.environ, **hub_env(fake), "HF_HOME": str(tmp_path / "hf"),
                                  "FTSPACE_RUNS": str(tmp_path)})
        assert out.returncode == 0, out.stderr[-3000:]
        model_path, train_rows, said = json.loads(out.stdout.strip().splitlines()[-1])
        assert "models--unsloth--Qwen3-0.6B-unsloth-bnb-4bit" in model_path and train_rows == 8
        assert any(f"pre-quantized release {release} is fetched now" in line for line in said), said
        assert not any("/unsloth/Qwen3-0.6B/" in path or path.endswith("/unsloth/Qwen3-0.6B")
                       for _, path, _ in fake.requests)  # the 16-bit model: never asked for


def test_push_merged_model_loads_with_plain_transformers(trained_run, fake_hub, tmp_path):
    url = hub.push(trained_run, "merged-test", TOKEN, private=True, merged=True)
    assert url.endswith("tester/merged-test")
    merged = fake_hub.repos["tester/merged-test-merged"]
    assert merged["private"] is True and "model.safetensors" in merged["files"]
    assert "library_name: transformers" in merged["files"]["README.md"].decode()
    out = tmp_path / "merged"
    out.mkdir()
    for name, data in merged["files"].items():
        (out / name).write_bytes(data)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out)
    assert not any("lora" in n for n, _ in model.named_parameters())


def test_push_gguf_lays_out_a_repo_ollama_and_llama_cpp_pull_from(trained_run, fake_hub):
    """--gguf: the export checked against the run, then REPO-GGUF with the file at the root named with its type,
    the Modelfile pointing at it, and a card with the usage lines and the parity figures; without a token,
    nothing is exported or created."""
    with pytest.raises(HubError, match="No Hugging Face token"):
        hub.push(trained_run, "gguf-test", None, gguf="q8_0")
    assert "tester/gguf-test" not in fake_hub.repos
    url = hub.push(trained_run, "gguf-test", TOKEN, private=True, gguf="q8_0")
    assert url.endswith("tester/gguf-test")
    assert "adapter_model.safetensors" in fake_hub.repos["tester/gguf-test"]["files"]
    repo = fake_hub.repos["tester/gguf-test-GGUF"]
    assert repo["private"] is True
    assert sorted(repo["files"]) == ["Modelfile", "README.md", "export.json", "gguf-test-GGUF-Q8_0.gguf"]
    assert repo["files"]["gguf-test-GGUF-Q8_0.gguf"][:4] == b"GGUF"
    assert repo["files"]["Modelfile"].decode().startswith("FROM ./gguf-test-GGUF-Q8_0.gguf\n")
    card = repo["files"]["README.md"].decode()
    assert "ollama run hf.co/tester/gguf-test-GGUF:Q8_0" in card and "llama-cli -hf tester/gguf-test-GGUF:Q8_0" in card
    assert "[tester/gguf-test](https://huggingface.co/tester/gguf-test)" in card and "greedy answers identical" in card
    assert yaml.safe_load(card.split("---")[1])["tags"][:2] == ["gguf", "ftspace"]
    assert TOKEN not in card and TOKEN not in repo["files"]["export.json"].decode()


# huggingface_hub retries a commit 5 times on 5xx and timeouts (with backoff), so a failure that
# lasts is 6 in a row; a 401 is final at once. The backoff is recorded, not slept (conftest's hub_backoff).
@pytest.mark.parametrize("where, failure, times, message", [
    ("/commit/", 500, 6, "server error (500)"),    # repo created and files announced, then commits fail
    ("/commit/", 401, 1, "refused (401)"),         # the token was revoked half way through
    ("/commit/", "hang", 6, "did not answer within 0.5 s"),
])
def test_push_failing_part_way_keeps_the_adapter_and_a_retry_succeeds(trained_run, fake_hub, monkeypatch, hub_backoff,
                                                                     where, failure, times, message):
    monkeypatch.setattr(hub, "HUB_TIMEOUT_S", 0.5)
    fake_hub.hang_s = 1
    repo = f"tester/partway-{failure}"
    before = {p.name: p.read_bytes() for p in trained_run.adapter_dir.iterdir()}
    fake_hub.fail_at = (where, failure, times)
    with pytest.raises(hub.HubError) as e:
        hub.push(trained_run, repo, TOKEN)
    assert fake_hub.fail_at is None, "the failure was never reached"
    assert message in str(e.value) and "local adapter is unchanged" in str(e.value), str(e.value)
    # retried with the client's backoff where a retry can help (1+2+4+8+8 s), never after a refusal
    assert hub_backoff.slept == ([1, 2, 4, 8, 8] if times == 6 else []), hub_backoff.slept
    assert TOKEN not in str(e.value)
    assert repo in fake_hub.repos and fake_hub.repos[repo]["files"] == {}  # created, nothing committed
    assert {p.name: p.read_bytes() for p in trained_run.adapter_dir.iterdir()} == before

    url = hub.push(trained_run, repo, TOKEN)
    assert url.endswith(repo)
    files = fake_hub.repos[repo]["files"]
    assert files["adapter_model.safetensors"] == before["adapter_model.safetensors"]


def test_a_passing_hub_hiccup_is_retried(trained_run, fake_hub, hub_backoff):
    fake_hub.fail_at = ("/preupload/", 503, 1)  # huggingface_hub retries idempotent steps with backoff
    assert hub.push(trained_run, "tester/hiccup", TOKEN).endswith("tester/hiccup")
    assert hub_backoff.slept == [1]
    assert fake_hub.fail_at is None and "adapter_model.safetensors" in fake_hub.repos["tester/hiccup"]["files"]
