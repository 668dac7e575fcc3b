"""Shared fixtures: every run, cache and Hub lookup points at tmp paths; the Hub is offline. Every process a
test (or a module's app) started is ended when the test (or the module) is over; the Hub client's retry
sleeps are recorded, not slept."""

import os
import signal
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
import sys
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Put on a child process's PYTHONPATH by the tests that need it; not test modules of their own.
collect_ignore = ["zerogpu_shim/sitecustomize.py"]

SESSION_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}

# Under `pytest -n N` the cores are shared out: each test process, and every process it starts (apps, workers, the
# CLI), computes on cores/N threads. Two processes each spinning 2 OpenMP threads on 2 cores slow a training step
# about tenfold (each waits at every barrier for a thread the other has descheduled).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    THREADS = str(max(1, len(os.sched_getaffinity(0)) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    os.environ.update(OMP_NUM_THREADS=THREADS, MKL_NUM_THREADS=THREADS)  # before anything imports torch


@pytest.fixture(scope="session", autouse=True)
def offline_env(tmp_path_factory):
    """Offline Hub, HF caches under tmp; the default model converted once per session under tmp."""
    base = tmp_path_factory.mktemp("env")
    old = dict(os.environ)
    os.environ.update(SESSION_ENV, HF_HOME=str(base / "hf"), FTSPACE_CACHE=str(base / "ftspace-cache"))
    # The converted default checkpoint is deterministic and read-only: reuse one from the user cache when present
    # (saves ~20 s), else convert it once for the test run into a folder its test processes share (the first to
    # need it converts; the other waits for it: ftspace.models.ensure_default_model's lock).
    shared = Path.home() / ".cache" / "ftspace" / "models" / "SmolLM2-135M-Instruct"
    (base / "ftspace-cache").mkdir(parents=True)
    if (shared / "model.safetensors").exists():
        (base / "ftspace-cache" / "models").mkdir()
        os.symlink(shared, base / "ftspace-cache" / "models" / "SmolLM2-135M-Instruct")
    else:
        run_root = tmp_path_factory.getbasetemp().parent if os.environ.get("PYTEST_XDIST_WORKER") else base
        (run_root / "shared-models").mkdir(exist_ok=True)
        (base / "ftspace-cache" / "models").mkdir()
        os.symlink(run_root / "shared-models" / shared.name, base / "ftspace-cache" / "models" / shared.name)
    yield
    os.environ.clear()
    os.environ.update(old)


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    path = tmp_path / "runs"
    monkeypatch.setenv("FTSPACE_RUNS", str(path))
    return path


@pytest.fixture(scope="session")
def default_model_path():
    from ftspace.models import ensure_default_model

    return ensure_default_model(progress=lambda *_: None)


@pytest.fixture(scope="session")
def smol_tokenizer(default_model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_model_path)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, default_model_path, smol_tokenizer):
    """A 2-layer random-weight Llama with the real SmolLM2 tokenizer and chat template."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(smol_tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True,
                         bos_token_id=1, eos_token_id=2, pad_token_id=2)
    LlamaForCausalLM(config).save_pretrained(path)
    smol_tokenizer.save_pretrained(path)
    # Offered by the "owner" to every visitor of the shared apps the tests start (no other server folder is a base
    # model there: tests/test_hostile.py); str(path) exactly, as the tests name it.
    os.environ["FTSPACE_OWNER_MODELS"] = str(path)
    return path


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, default_model_path):
    """`ftspace demo` as a real process, once per test session: the real default model trained on examples/facts.yaml
    (the suite's one real-model run of that config). (CompletedProcess, run folder); the CLI test reads its output,
    the evaluation test scores its adapter. Read-only for them: a test that changes a run copies it."""
    from clitools import cli_process

    runs = tmp_path_factory.mktemp("demo") / "runs"
    result = cli_process("demo", env={"FTSPACE_RUNS": str(runs)}, timeout=880)
    assert result.returncode == 0, result.stderr[-3000:]
    [run_dir] = [p for p in runs.iterdir() if p.is_dir()]
    return result, run_dir


@pytest.fixture
def write(tmp_path):
    """write('name.jsonl', text_or_bytes) -> path"""

    def _write(name, content):
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return path

    return _write


# --- two test processes (`make test` runs `pytest -n 2 --dist loadscope`): a module is one unit of work, so its
# tests run in one process (its app, started once per module, serves them all); the real-model module first, as
# it is the longest unit (its tests share one trained run and the base model's cached probe answers), then GRPO's

REAL_MODEL_MODULES = ("tests/test_grpo.py", "tests/test_learning.py")  # the longest last in this list: it goes first


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModulesLongestFirst(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return nodeid.split("::", 1)[0]

        def _assign_work_unit(self, node):
            for module in REAL_MODEL_MODULES:
                if module in self.workqueue:
                    self.workqueue.move_to_end(module, last=False)
            super()._assign_work_unit(node)

    return ModulesLongestFirst(config, log)


# --- tests change no tracked file (the README's picture included: `make screenshot` refreshes it)


def tracked_changes() -> str | None:
    """`git diff` of the tracked files (None outside a git checkout)."""
    import subprocess

    out = subprocess.run(["git", "diff", "--no-ext-diff", "--binary"], cwd=ROOT, capture_output=True)
    return out.stdout.decode("utf-8", "replace") if out.returncode == 0 else None


def pytest_sessionstart(session):
    if not hasattr(session.config, "workerinput"):  # the run itself, not one of its xdist workers
        session.config._tracked_before = tracked_changes()


def pytest_sessionfinish(session, exitstatus):
    before = getattr(session.config, "_tracked_before", None)
    changed = tracked_changes() if before is not None else None
    if changed is not None and changed != before:
        files = sorted({line[6:] for line in changed.splitlines() if line.startswith("+++ b/")}
                       - {line[6:] for line in before.splitlines() if line.startswith("+++ b/")})
        session.config.get_terminal_writer().line(
            f"error: tracked files changed during the test run {files or '(ones already modified)'}: tests write "
            "under tmp paths and test-artifacts/ only (or a file was edited while the tests ran)", red=True)
        session.exitstatus = 1


# --- processes a test started end with it


def marked_processes(marker: str) -> list[int]:
    """The processes whose environment carries `marker` (NAME=VALUE): inherited by everything started from a
    process that has it, through new sessions and orphaning (training workers leave their parent's group)."""
    needle, found = marker.encode() + b"\0", []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            pass
    return found


def end_marked(marker: str) -> list[int]:
    """SIGKILL every process carrying `marker` and the process group each one leads; returns their pids."""
    return end(marked_processes(marker))


def end(pids) -> list[int]:
    """SIGKILL each process and the process group it leads."""
    for pid in pids:
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    return list(pids)


def _marking(name: str):
    value = uuid.uuid4().hex
    os.environ[name] = value
    before = set(warm_children())
    try:
        yield
    finally:
        os.environ.pop(name, None)
        end_marked(f"{name}={value}")
        end(set(warm_children()) - before)  # forked by the warm process, which carries no mark


# Workers this test process launches fork from its warm processes (ftspace.engine.warm: Unsloth's and the plain HF
# path's), started before any test so that they carry no test's mark (the mark would end them with that test); the
# workers they fork during a test (or a module) are ended with it instead.
WARM = []


def warm_children() -> list[int]:
    import psutil

    children = []
    for starter in WARM:
        try:
            children += [p.pid for p in psutil.Process(starter.proc.pid).children()]
        except psutil.NoSuchProcess:
            pass
    return children


@pytest.fixture(scope="session", autouse=True)
def warm_start(offline_env):
    from ftspace.targets import local

    WARM[:] = local.warm_up()  # Unsloth's, and the plain HF path's
    yield
    for starter in WARM:
        starter.close()
    WARM.clear()


@pytest.fixture(scope="module", autouse=True)
def end_module_processes():
    """What a module's shared fixtures started (an app and the workers it launched) ends with the module. Set up
    before the module's other fixtures, so they all carry the mark."""
    yield from _marking("FTSPACE_TEST_MODULE")


@pytest.fixture(autouse=True)
def end_test_processes():
    """What a test started (CLI commands, training workers, apps) ends with the test, passed or failed: a failed
    test never leaves a worker using the cores for the rest of the suite."""
    yield from _marking("FTSPACE_TEST_PROCESS")


# --- the Hub client's backoff, recorded instead of slept


class RecordedSleeps:
    """`huggingface_hub.utils._http`'s view of the time module: sleep records its seconds and returns at once,
    so a test proves the retries happened (and their backoff) without waiting 1+2+4+8+8 s for each."""

    def __init__(self):
        self.slept: list[float] = []

    def sleep(self, seconds):
        self.slept.append(float(seconds))

    def __getattr__(self, name):
        return getattr(time, name)


@pytest.fixture(autouse=True)
def hub_backoff(monkeypatch):
    from huggingface_hub.utils import _http

    recorded = RecordedSleeps()
    monkeypatch.setattr(_http, "time", recorded)
    return recorded
