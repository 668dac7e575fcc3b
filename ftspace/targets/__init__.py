"""The one gate, and where runs go.

Every way in — each tab's events and their API endpoints, every MCP tool, the CLI — hands what a caller
asks for to `admit` (a run's config), `admit_model` / `admit_dataset` (a base model or data for a check,
a chat or an evaluation) or `admit_chat` before anything is created, downloaded, uploaded or queued.
No entry point keeps its own copy of these rules.

On a shared app (a Space, or FTSPACE_MULTIUSER=1), for a caller who is not the machine's owner:

- a base model is `default` or a Hub model id (owner/name) the caller may read (asked of the Hub with
  their token, and sized from its metadata before any download); a run of theirs is chatted with by its id;
- a dataset is a bundled example (`example:NAME`), an upload of theirs ("name (uploaded)"), or a Hub
  dataset id they may read (sized likewise);
- nothing else on the server's disk can be read, listed, used, or its existence revealed: the rules look
  at the text only (a relative path that happens to exist is still taken as a Hub id), and every other
  text gets the same one line saying what is allowed;
- the limits of `ftspace.limits` apply (steps, sequence length, processes, runs per caller and in the
  queue, Hub sizes, sweep trials, chat size).

Self-hosted single-user, the machine is its user's: paths work and nothing is limited.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ftspace import access, env, errors, limits, owners, runs
from ftspace.config import RunConfig
from ftspace.errors import ConfigError, DataError, ModelError, RunError


@dataclass(frozen=True)
class Caller:
    """Who asks: `owner` ("user:NAME", "browser:HASH", or "local" for the machine's user), the token their Hub
    calls carry (None: none), whether that token may write (push, Jobs), and `page`: the owner the same page's
    events had before it knew its browser id (its session: an upload sent while a new page still loads is filed
    there, and may finish after the page has its id), whose uploads are the caller's too."""
    owner: str
    token: str | None = field(default=None, repr=False)
    can_write: bool = True
    page: str = ""

    @property
    def upload_owners(self) -> tuple[str, ...]:
        return (self.owner, self.page) if self.page and self.page != self.owner else (self.owner,)

    @classmethod
    def local(cls, token: str | None = None) -> "Caller":
        return cls("local", token)


MODEL_RULE = ("on this shared app a base model is 'default', a Hub model id (owner/name) you may read, or one the "
              "app's owner offers; to chat with a run of yours pick it under 'a run of mine'")
DATASET_RULE = ("on this shared app a dataset is a bundled example (example:NAME), a file you uploaded "
                "('name (uploaded)'), or a Hub dataset id (owner/name) you may read")


def shared() -> bool:
    return env.multi_user()


# --- models and datasets


def admit_model(name: str, caller: Caller, *, check_hub: bool = True) -> str:
    """The base model `name` as the caller may use it, or one line saying what is allowed."""
    name = (name or "").strip()
    if not shared():
        return name
    if name == "default" or name in owners.owner_models():
        return name
    if not access.hub_shaped(name):
        raise ModelError(f"{_shown(name)}: {MODEL_RULE}.")
    if check_hub:
        size = _hub_read(name, "model", caller)
        limits.check("model_gb", round(size / 1e9, 1), f"{name}: its weights")
    return name


def admit_dataset(text: str, caller: Caller, *, what: str = "dataset", check_hub: bool = True) -> str:
    """The dataset `text` as the caller means it (an upload's shown name becomes its file) and may read it."""
    text = (text or "").strip()
    if text.endswith(owners.UPLOADED):  # an upload of theirs, by the name the app showed (both modes)
        return owners.dataset_from_shown(caller.upload_owners, text)
    if not text or not shared():
        return text
    if text.startswith("example:"):
        from ftspace.data.load import bundled_examples

        name = text.split(":", 1)[1]
        if name not in bundled_examples():
            raise DataError(f"{what} {_shown(text)}: no bundled example of that name: choose one of "
                            f"{', '.join(bundled_examples())}.")
        return text
    path = Path(text)
    if path.is_absolute() and ".." not in path.parts \
            and any(_inside(path, owners.owner_uploads(owner)) for owner in caller.upload_owners) and path.is_file():
        return str(path)  # a file of theirs, as an earlier answer of this app named it
    if not access.hub_shaped(text):
        raise DataError(f"{what} {_shown(text)}: {DATASET_RULE}.")
    if check_hub:
        size = _hub_read(text, "dataset", caller)
        limits.check("dataset_mb", round(size / 1e6), f"{what} {text}: its files")
    return text


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return False


def _shown(text: str) -> str:
    """Visitor text in a message: one line, no control characters, not too long."""
    return errors.escape(text, 80)


def _hub_read(repo_id: str, kind: str, caller: Caller) -> int:
    """Ask the Hub, with the caller's token only, whether they may read the repo; its files' size in bytes."""
    try:
        return access.hub_size(repo_id, kind, caller.token)
    except PermissionError as e:
        error = DataError if kind == "dataset" else ModelError
        raise error(f"Hub {kind} {e}" if kind == "dataset" else str(e)) from None


# --- runs


def runs_owner(caller: Caller) -> str | None:
    """Whose runs this caller's requests may read (an estimate's measured step time, a listing): their own on a
    shared app; None (everyone's: the machine is theirs) self-hosted."""
    return caller.owner if shared() else None


def check_sources(cfg, token: str | None) -> None:
    """Before a run is queued on a self-hosted app: the caller may read its Hub model and Hub dataset (local
    ones pass). A shared app asks the same of the Hub in `admit`, sizes included."""
    from ftspace.data.load import resolve

    for dataset in filter(None, (cfg.dataset, cfg.test_dataset.strip())):
        if resolve(dataset)[0] == "hub":
            try:
                access.check_hub_read(dataset, "dataset", token)
            except PermissionError as e:
                raise DataError(f"Hub dataset {e}") from None
    model = cfg.model_name
    if model != "default" and not Path(model).expanduser().exists():
        try:
            access.check_hub_read(model, "model", token)
        except PermissionError as e:
            raise ModelError(str(e)) from None


def admit(cfg: RunConfig, caller: Caller, *, queue: bool = True) -> RunConfig:
    """The one gate for a run: `cfg` as the caller may run it (datasets resolved to what they mean), or one
    line saying what is not allowed and what is. `queue`: the run is about to be queued (its counts apply)."""
    cfg = cfg.replace(dataset=admit_dataset(cfg.dataset, caller),
                      test_dataset=admit_dataset(cfg.test_dataset, caller, what="test_dataset"),
                      model_name=admit_model(cfg.model_name, caller))
    if cfg.train_on == "hf_jobs" and not caller.can_write:
        raise ConfigError("Training on Hugging Face Jobs needs a token that may write (it creates the run's private "
                          "repo): send a write token, or a fine-grained one with repo write access.")
    if not shared():
        if queue and caller.owner == "local":
            check_sources(cfg, caller.token)
        return cfg
    if cfg.max_steps > 0:
        limits.check("max_steps", cfg.max_steps)
    else:
        limits.check("epochs", cfg.num_train_epochs, "num_train_epochs")
    limits.check("max_seq_length", cfg.max_seq_length)
    from ftspace.models import hardware

    processes = cfg.num_processes or 1
    if cfg.train_on != "hf_jobs":
        gpus = hardware().get("gpus", 0)
        if processes > max(1, gpus):
            raise ConfigError(f"num_processes {processes}: this machine has {gpus or 'no'} GPU(s), so at most "
                              f"{max(1, gpus)} training process: set num_processes to 0.")
    limits.check("num_processes", processes, "num_processes")
    if queue:
        check_queue(caller)
    return cfg


def check_queue(caller: Caller) -> None:
    """One more run of this caller's may wait or train (their own count and the queue's total)."""
    if not shared():
        return
    active = [st for st in (r.status() for r in runs.list_runs()) if st.get("status") in runs.ACTIVE]
    mine = sum(1 for st in active if st.get("owner") == caller.owner)
    if limits.over("runs_per_caller", mine + 1):
        raise RunError(limits.refusal("runs_per_caller", "Another run of yours", mine + 1)
                       + " Wait for one to finish, or stop one.")
    if limits.over("queue", len(active) + 1):
        raise RunError(limits.refusal("queue", "This app's queue", len(active) + 1) + " Try again later.")


def submit(scheduler, cfg: RunConfig, caller: Caller) -> runs.Run:
    """Admit, then queue (or send to Hugging Face Jobs): the way every entry point starts a run."""
    cfg = admit(cfg, caller)
    return scheduler.submit(cfg, owner=caller.owner, token=caller.token)


def resume(scheduler, run: runs.Run, caller: Caller) -> runs.Run:
    """Queue a run of the caller's again (its config was admitted when it started; the counts apply again)."""
    check_queue(caller)
    if target_for(run) == "jobs" and not caller.can_write:
        raise ConfigError("Resuming on Hugging Face Jobs needs a token that may write: send a write token.")
    return scheduler.resubmit(run, caller.token)


def stop(scheduler, run: runs.Run, caller: Caller) -> None:
    """Stop a run of the caller's where it trains: after its current step, or its job cancelled (their token)."""
    scheduler.stop(run, caller.token)


def delete(run: runs.Run, caller: Caller) -> None:
    """Delete a run of the caller's (the app found it among theirs), refused while it trains; what it pushed to the
    Hub stays there."""
    runs.delete(run)


# --- where a run trains: decided here, and only here


def target_for(run_or_cfg) -> str:
    """'jobs' (Hugging Face Jobs, billed to the caller's account), 'zerogpu' (GPU calls made from the owner's own
    events) or 'local' (a worker process on this machine, one run at a time)."""
    if isinstance(run_or_cfg, runs.Run):
        if run_or_cfg.read_status().get("job"):
            return "jobs"
        run_or_cfg = run_or_cfg.config()
    if run_or_cfg.train_on == "hf_jobs":
        return "jobs"
    return "zerogpu" if env.on_zerogpu() else "local"


def jobs_flavors() -> list[str]:
    """The Hugging Face Jobs hardware a run may ask for (train_on hf_jobs)."""
    from ftspace.targets.jobs import flavor_names

    return flavor_names()


def zerogpu_quotas() -> dict[str, int]:
    """A ZeroGPU visitor's daily GPU minutes, by account tier."""
    from ftspace.targets.zerogpu import TIERS

    return {name: tier.daily_quota_s // 60 for name, tier in TIERS.items()}


def follow(run: runs.Run, caller: Caller) -> None:
    """Keep the run's folder current wherever it trains. A Jobs run's log is read on a background thread of this
    process with the caller's token (again after a restart of the app; at most one follower per run across
    processes); a local or ZeroGPU run's worker writes the folder itself."""
    if target_for(run) == "jobs":
        from ftspace.targets import jobs_log

        jobs_log.attach(run, caller.token)


def follow_again(caller: Caller) -> None:
    """Follow every active Jobs run the caller may see: after a restart of the app nothing else reads their jobs'
    logs (the app calls this at start with the machine's own token when it is single-user, and on a visitor's page
    load with theirs)."""
    for run in owners.visible_runs(caller.owner):
        if run.read_status().get("status") in runs.ACTIVE:
            follow(run, caller)


def refresh(run: runs.Run, caller: Caller) -> None:
    """Catch the run's folder up once, without following (`ftspace status`): a Jobs run asks the Hub."""
    if target_for(run) == "jobs":
        from ftspace.targets import jobs_log

        jobs_log.refresh(run, caller.token)


def quote(plan: dict, cfg: RunConfig, caller: Caller) -> dict | None:
    """Time, cost and who pays on the run's target, for an estimate (None where it costs nothing extra)."""
    if target_for(cfg) != "jobs":
        return None
    from ftspace.targets import jobs

    return jobs.quote(plan, cfg, caller.token)


def drive(scheduler, run: runs.Run, caller: Caller, tier: str, wait_s: float = 2.0):
    """ZeroGPU: from the caller's own request, wait for the run's turn (keeping its place), then make its GPU calls,
    billed to that caller's quota; yields after each wait and each call. Anywhere else the run trains by itself and
    this returns at once."""
    if target_for(run) != "zerogpu" or run.read_status().get("status") != "queued":
        return
    from ftspace.targets import zerogpu

    while scheduler.claim(run) > 0:  # its place in the queue; 0 once it holds the slot
        scheduler.hold_place(run, seconds=30)  # the caller still waits: keep the place
        yield
        time.sleep(wait_s)
    yield from zerogpu.drive(run, caller.token, tier)


AGENT_HOLD_S = 300  # how long a ZeroGPU run waits in the queue for an agent's next poll


def advance(scheduler, run: runs.Run, caller: Caller, tier: str) -> None:
    """ZeroGPU, for a caller with no page (an agent): one turn of `drive` per request. A run still waiting for
    its turn keeps its place until AGENT_HOLD_S from now; a run whose turn it is makes one GPU call from this
    request (billed to its x-ip-token), then waits in the queue again, for as long, for the next request.
    Anywhere else nothing: the run trains by itself."""
    if target_for(run) != "zerogpu" or run.read_status().get("status") != "queued":
        return
    from ftspace.targets import zerogpu

    if scheduler.claim(run) == 0:
        for _ in zerogpu.drive(run, caller.token, tier, calls=1):
            pass
    await_agent(scheduler, run)


def await_agent(scheduler, run: runs.Run) -> None:
    """ZeroGPU: a queued run keeps its place for AGENT_HOLD_S, until its agent's next request (`advance`)."""
    if target_for(run) == "zerogpu" and run.read_status().get("status") == "queued":
        scheduler.hold_place(run, seconds=AGENT_HOLD_S)


def evaluation_updates(run: runs.Run, options, caller: Caller, tier: str, cancel=None, against: runs.Run | None = None):
    """An evaluation's ("progress", done, total, what) items, then ("done", scorecard), or with `against` (another
    run of the caller's) a comparison's, then ("done", {"run": scorecard, "against": scorecard}): on ZeroGPU in one
    GPU call (sized by `tier`), elsewhere on a thread of this process (`cancel` stops it)."""
    from ftspace import evaluation

    # test rows, adapters: told before any model (or GPU) is asked for, and read once (handed to the work)
    checked = (evaluation.compare_preflight(run, against, options, caller.token) if against is not None else
               evaluation.preflight(run, options, caller.token))
    if env.on_zerogpu():
        from ftspace.targets import zerogpu

        return zerogpu.carried(zerogpu.evaluate_on_gpu(str(run.path), vars(options), caller.token, tier, checked,
                                                       str(against.path) if against is not None else None))
    return evaluation.stream(run, options, caller.token, cancel=cancel, checked=checked, against=against)


def chat_replies(source: tuple, prompt: list, base_prompt: list | None, settings, tier: str,
                 other: tuple | None = None):
    """(tuned_text, second_text) as the replies grow; the second only with a `base_prompt`: the base's (the adapter
    off), or with `other` (another resolved source: a second run) that one's. On ZeroGPU in one GPU call per message
    (sized by `tier`), elsewhere with the models this process keeps loaded."""
    if env.on_zerogpu():
        from ftspace.targets import zerogpu

        return zerogpu.carried(zerogpu.chat_on_gpu(source, prompt, base_prompt, vars(settings), tier, other))
    from ftspace.chat import both_replies, load_cached

    return both_replies(load_cached(source), prompt, base_prompt, settings,
                        load_cached(other) if other is not None else None)


def chat_reply(source: tuple, messages: list, compare_base: bool, settings, tier: str) -> tuple[str, str]:
    """(tuned reply, base reply or "") in one go, for an agent: on ZeroGPU the texts one GPU call streamed, elsewhere
    the replies of the model this process keeps loaded."""
    if env.on_zerogpu():
        tuned = base = ""
        for tuned, base in chat_replies(source, messages, messages if compare_base else None, settings, tier):
            pass
        return tuned, base
    from ftspace.chat import load_cached

    model = load_cached(source)
    return model.reply(messages, settings), model.reply(messages, settings, base=True) if compare_base else ""


def export_gguf(run: runs.Run, quant: str, caller: Caller, progress=None) -> dict:
    """A run exported as GGUF with its Modelfile, checked against the run (ftspace.export.gguf), into the run's
    exports/TYPE: in this process (`progress` called), or on ZeroGPU in a helper process (the app process never
    imports transformers; no GPU is asked for: the merge and the check run on the CPU). On a shared app a run
    keeps one export, the last: a visitor cannot fill the disk with every type of every run."""
    import shutil

    from ftspace import export, offload

    export.check(run, quant, caller.token)  # a wrong type, no adapter, an architecture llama.cpp is not given
    if shared():
        for other in (run.path / "exports").glob("*"):
            if other.name != quant and not other.name.startswith("."):  # not an export being written
                shutil.rmtree(other, ignore_errors=True)
    out = run.path / "exports" / quant
    if env.on_zerogpu():
        return offload.call("ftspace.export:gguf_into", run_dir=str(run.path), quant=quant, out_dir=str(out),
                            token=caller.token)
    from ftspace.chat import on_compute_thread  # the model work on the process's one compute thread

    return on_compute_thread(lambda: export.gguf(run, quant, ollama=True, out_dir=out, token=caller.token,
                                                 progress=progress or (lambda done, total, what: None)))


class Gated:
    """A scheduler whose submit goes through the gate: what a sweep submits its trials to."""

    def __init__(self, scheduler, caller: Caller):
        self.scheduler, self.caller = scheduler, caller

    def submit(self, cfg: RunConfig, owner: str = "", token: str | None = None) -> runs.Run:
        return submit(self.scheduler, cfg, self.caller)

    def __getattr__(self, name):
        return getattr(self.scheduler, name)


def admit_sweep(cfg: RunConfig, trials: int, caller: Caller) -> RunConfig:
    limits.check("sweep_trials", trials, "A sweep's trials")
    return admit(cfg, caller)


# --- dataset creation


def admit_creation(settings, mode: str, inputs: int, chunks: int, caller: Caller) -> None:
    """A dataset creation within the limits: the rows it writes and the teacher requests it sends (the default
    teacher runs on this server's CPU; a visitor's endpoint is reached only at checked addresses)."""
    if settings.eval_dataset:
        settings.eval_dataset = admit_dataset(settings.eval_dataset, caller, what="eval_dataset")
    if not shared():
        return
    from ftspace.data.create import preview

    rows = settings.num_pairs if mode == "synth" else chunks * settings.questions_per_chunk
    limits.check("teacher_rows", rows, "The rows this creation writes")
    limits.check("teacher_requests", preview(settings, mode, inputs, chunks)["requests"],
                 "The teacher requests this creation sends")


# --- checks of data, and evaluations


def admit_inspection(source: str, model_name: str, max_seq_length: int, caller: Caller) -> tuple[str, str]:
    """(dataset, base model) of a data check (the Dataset tab's, an agent's inspect_dataset) as the caller may
    use them, its tokenizing length within the limit."""
    limits.check("max_seq_length", max_seq_length)
    return admit_dataset(source, caller), admit_model(model_name or "default", caller)


def admit_evaluation(test_dataset: str, max_rows: int, caller: Caller) -> str:
    """An evaluation's own test set (if any) as the caller may read it, and how many rows it scores."""
    limits.check("eval_rows", max_rows, "max_rows")
    return admit_dataset(test_dataset or "", caller, what="test_dataset")


# --- chat and evaluation


def admit_chat(messages: list[dict], caller: Caller) -> None:
    """A question's history and its messages within the limits (every message, any role)."""
    if not shared():
        return
    limits.check("chat_turns", len(messages), "This conversation")
    for m in messages:
        limits.check("message_chars", _chars(m.get("content") if isinstance(m, dict) else m), "A message")


def _chars(content) -> int:
    """A message's size in characters: its text, or its parts' texts (Gradio's and OpenAI's list form)."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, (list, tuple)):
        return sum(_chars(part.get("text", "") if isinstance(part, dict) else part) for part in content)
    return len(str(content or ""))


_slots: dict[str, int] = {}
_slots_lock = threading.Lock()


@contextmanager
def model_slot(caller: Caller):
    """One of the chat/evaluation slots for this caller: a caller holds at most FTSPACE_MAX_MODEL_SLOTS at once,
    so no visitor can take every slot the app has."""
    with _slots_lock:
        held = _slots.get(caller.owner, 0)
        if shared() and limits.over("model_slots", held + 1):
            raise RunError(limits.refusal("model_slots", "Another chat or evaluation of yours", held + 1)
                           + " Wait for the one you started to answer.")
        _slots[caller.owner] = held + 1
    try:
        yield
    finally:
        with _slots_lock:
            _slots[caller.owner] -= 1
            if not _slots[caller.owner]:
                del _slots[caller.owner]
