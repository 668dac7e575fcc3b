"""ZeroGPU: a run trains as a chain of GPU calls made from its owner's own Gradio event; chat replies
stream from one GPU call per message.

How ZeroGPU works (`spaces` 0.51): a `@spaces.GPU` function runs in a fork of the app process that gets
a GPU for at most the requested duration. The wrapper reads the Gradio request of the event it is
called from and forwards the visitor's `x-ip-token`, so the call is billed to that visitor's daily
quota; a call from a background thread has no request and is billed to nobody's (or refused). So:

- `drive` runs inside the visitor's event (the Train tab's streaming "train on ZeroGPU" event): it
  prepares the run on CPU (download, convert, tokenize, in a helper process: see ftspace.offload), then
  makes one GPU call per slice, each sized to the work left and capped for the visitor's tier, and
  yields between calls. Training advances while the tab is open; Resume picks it up again.
- Each call's deadline counts from the moment the call got its GPU (model loading included), with a
  margin kept for the checkpoint save; the next call resumes from that checkpoint.
- Busy GPUs ("No GPU was available") are retried with backoff; an exhausted quota or a duration the
  tier does not allow ends the drive with one clear line (when the quota resets) and a resumable run.
- Nothing here touches CUDA at import time; off Spaces `spaces.GPU` is a no-op and the same path runs
  on CPU (tests also run the real wrapper against a fake device API: tests/fakezerogpu.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from ftspace.engine.saving import SAVE_MARGIN_S
from ftspace.env import on_zerogpu
from ftspace.runs import step_seconds


# --- how long a call may be, per account tier


@dataclass(frozen=True)
class Tier:
    daily_quota_s: int  # GPU seconds a day
    max_call_s: int  # the longest call we ask for


# Daily quotas as documented on the ZeroGPU page (hf.co/docs/hub/spaces-zerogpu, read 2026-11; they
# change): unauthenticated 2 min, free accounts 5 min, PRO 40 min. A call asking for more than the
# quota left is refused outright ("60s requested vs. 23s left"), so calls stay well under the daily
# quota: `spaces` itself asks for 60 s by default (DEFAULT_SCHEDULE_DURATION in spaces/zero/client.py).
TIERS = {
    "anonymous": Tier(daily_quota_s=120, max_call_s=60),
    "free": Tier(daily_quota_s=300, max_call_s=120),
    "pro": Tier(daily_quota_s=2400, max_call_s=300),
}
MIN_CALL_S = 20  # shorter calls spend most of their time loading the model
FIRST_LOAD_S = 45.0  # a fresh fork: import Unsloth, load the model, restore the checkpoint (before measured)
CHAT_LOAD_S = 20.0  # loading base + adapter in a chat call's fork, until measured (see chat_load_s)
GPU_SECONDS_PER_TOKEN = 0.05  # generate() on one ZeroGPU slice, small models: >= 20 tokens/s
RETRY_DELAYS_S = tuple(float(s) for s in os.environ.get("FTSPACE_ZEROGPU_RETRY_S", "5,15,45").split(","))
LEASE_MARGIN_S = 120  # a call may overrun its duration a little before ZeroGPU aborts it


def max_call_s(tier: str) -> int:
    """The cap for one call of this tier (FTSPACE_ZEROGPU_MAX_CALL_S lowers it for every tier)."""
    cap = TIERS[tier].max_call_s
    override = os.environ.get("FTSPACE_ZEROGPU_MAX_CALL_S")
    return min(cap, int(override)) if override else cap


def duration_factor() -> float:
    """`spaces` multiplies a requested duration by this on slower nodes (1.5 on RTX PRO 6000) before it
    asks for it; we divide by it first so what reaches ZeroGPU never exceeds the tier's cap."""
    if not on_zerogpu():
        return 1.0
    from spaces.zero.config import get_config

    return float(get_config()["duration_factor"])


def call_seconds(tier: str, work_s: float) -> int:
    """What to pass as a call's duration: the work left, at least MIN_CALL_S, at most the tier's cap,
    in the units `spaces` takes (before its node factor)."""
    cap = max_call_s(tier)
    want = min(cap, max(min(MIN_CALL_S, cap), work_s))
    return max(1, int(want / duration_factor()))


STEP_HEADROOM = 1.1  # steps vary: a call sized to the measured mean fell a step short (a fresh fork's call spent
# 11 s loading for the one step left, tests/test_zerogpu_fresh.py); a call ends when its work does, so room is cheap


def steps_with_headroom(left: int) -> float:
    """The steps a call is sized for when `left` remain: a tenth more, and one more step.

    >>> steps_with_headroom(0), steps_with_headroom(10), round(steps_with_headroom(100), 6)
    (0, 12.0, 111.0)
    """
    return left * STEP_HEADROOM + 1 if left else 0


def training_work_s(run) -> float:
    """Seconds the rest of a run needs in one call: the call's fixed cost (imports, load, restore: the most any
    call of the run measured, as the next may be a fresh fork), the steps left at the measured step time, and
    the checkpoint save. As long as allowed after a call ZeroGPU ended for overrunning."""
    events, _ = run.events()
    st = run.read_status()
    if st.get("call_aborted"):
        return float("inf")
    slices = [e for e in events if e.get("slice")]
    load_s = max(e["load_s"] for e in slices) if slices else FIRST_LOAD_S
    left = max(0, (st.get("total_steps") or 0) - (st.get("step") or 0))
    step_s = step_seconds(events)  # the newest call's own clock: each call restarts it
    if step_s is not None and st.get("total_steps"):
        return load_s + steps_with_headroom(left) * step_s + SAVE_MARGIN_S
    return float("inf")  # nothing measured yet: as long as the tier allows


def fixed_cost_refusal(run, tier: str) -> str | None:
    """One line when no call of this tier can train a step of this run, as measured: a call as long as the tier
    allows was ended by ZeroGPU before its first step, or even the quickest of two or more calls' fixed cost
    (imports, load, restore), one step and the save outlast the tier's cap. Else None."""
    events, _ = run.events()
    cap = max_call_s(tier) * duration_factor()
    more = {"anonymous": "sign in for 120 s calls, or use a smaller model",
            "free": "a PRO account allows 300 s calls; or use a smaller model"}.get(tier, "use a smaller model")
    kept = "The run is kept at its last checkpoint."
    exceeded = run.read_status().get("load_exceeds_s")
    if exceeded and exceeded >= cap:
        return (f"This model does not fit a ZeroGPU call of your tier: a {exceeded:.0f} s call ended before it had "
                f"loaded the model and trained a step, and {cap:.0f} s is the longest a call may last ({more}). {kept}")
    slices = [e for e in events if e.get("slice")]
    if len(slices) < 2:  # a first call also imports what a reused worker keeps: one says little of the next
        return None
    fixed, step = min(e["load_s"] for e in slices), step_seconds(events) or 0.0
    if fixed + step + SAVE_MARGIN_S < cap:
        return None
    return (f"This model does not fit a ZeroGPU call of your tier: a call spends at least {fixed:.0f} s loading it "
            f"before its first step, and with a step and the checkpoint save that is more than the {cap:.0f} s a call "
            f"may last ({more}). {kept}")


# --- GPU functions (their arguments and results are pickled across the fork)


def _gpu(duration):
    try:
        import spaces
    except ImportError:
        return lambda fn: fn
    return spaces.GPU(duration=duration)


def _requested(run_dir: str, seconds: int) -> int:
    return seconds


@_gpu(duration=_requested)
def train_slice(run_dir: str, seconds: int) -> str:
    """One call: load, resume, train until `seconds` after the GPU was granted (minus the save margin),
    checkpoint; 'completed', 'sliced' or 'failed'."""
    granted = time.time()  # the GPU is ours from here: imports and loading count against the call too
    from ftspace.engine import worker
    from ftspace.runs import Run

    run = Run(Path(run_dir))
    with _output_to(run.log_path), offline():  # the fork's output goes to the run's log, as a worker's does
        return worker.execute(run, resume=True, deadline=granted + seconds, started=granted)


# What a GPU call must never wait for: the run was prepared (model and data downloaded, tokenized) on the CPU
# before the first call, so nothing in the call needs the network, and Unsloth's start-up statistics download
# (a forked fetch that may wait 120 s) would spend the visitor's GPU seconds.
OFFLINE_ENV = {"UNSLOTH_DISABLE_STATISTICS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "HF_DATASETS_OFFLINE": "1"}


@contextlib.contextmanager
def offline():
    """No network for the length of the block, then as before (off a Space the call runs in the caller's own
    process). huggingface_hub read HF_HUB_OFFLINE when the app imported it, so its constant is set too."""
    from huggingface_hub import constants

    saved, saved_constant = {k: os.environ.get(k) for k in OFFLINE_ENV}, constants.HF_HUB_OFFLINE
    os.environ.update(OFFLINE_ENV)
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved_constant
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _output_to(path: Path):
    """Point this process's stdout and stderr (file descriptors 1 and 2, so library and C output too) at
    `path` for a while, then back."""
    from ftspace.quiet import descriptors_to

    with open(path, "ab") as log, descriptors_to(log.fileno()):
        yield


@dataclass(frozen=True)
class Loaded:
    """A chat call's note from its fork: seconds from the call's start until its model was ready (imports and
    loading in a fresh fork, nothing in a reused one that has it cached)."""
    seconds: float


CHAT_LOADS: list[float] = []  # measured by this app's chat calls, newest last


def chat_load_s() -> float:
    """What a chat call budgets for loading: the most any of the last 5 calls measured (the next may be a fresh
    fork), CHAT_LOAD_S before any was measured."""
    return max(CHAT_LOADS[-5:]) if CHAT_LOADS else CHAT_LOAD_S


def _chat_seconds(source, prompt, base_prompt, settings, tier, other=None) -> int:
    replies = 2 if base_prompt is not None else 1
    loads = 2 if other is not None else 1  # a second run's model loaded in the same call
    return call_seconds(tier, loads * chat_load_s() + replies * settings["max_new_tokens"] * GPU_SECONDS_PER_TOKEN)


@_gpu(duration=_chat_seconds)
def chat_on_gpu(source: tuple, prompt: list, base_prompt: list | None, settings: dict, tier: str,
                other: tuple | None = None):
    """One GPU call per message: how long loading took (a `Loaded` item), then the tuned reply streamed and (side
    by side) the base reply with the adapter off, or `other`'s (a second run), as (tuned_text, second_text) pairs.
    `tier` only sizes the call."""
    started = time.time()
    from ftspace.chat import GenerationSettings, both_replies, load_cached

    def replies():
        model = load_cached(source)
        second = load_cached(other) if other is not None else None
        yield Loaded(round(time.time() - started, 2))  # with a second model: both (a later call budgets more)
        yield from both_replies(model, prompt, base_prompt, GenerationSettings(**settings), second)

    yield from carrying_errors(replies())


def _eval_seconds(run_dir, options, token, tier, checked=None, against_dir=None) -> int:
    return call_seconds(tier, 10_000)  # as long as the tier allows: the whole evaluation in one call


EVAL_MARGIN_S = 5.0  # what an evaluation call keeps, at most, for its last batch and handing the scorecard back


@_gpu(duration=_eval_seconds)
def evaluate_on_gpu(run_dir: str, options: dict, token: str | None, tier: str, checked: tuple | None = None,
                    against_dir: str | None = None):
    """One GPU call: the evaluation's progress items and its scorecard (ftspace.evaluation.stream), or with
    `against_dir` the comparison of two runs, cancelled in time to say so in one line when it would outlast the
    call (ZeroGPU would end the call with nothing said). `checked`: the test rows and adapters
    `evaluation.preflight` (`compare_preflight`) found on the CPU (a Hub test set is not downloaded again while the
    visitor's GPU seconds run)."""
    import threading

    from ftspace.evaluation import Cancelled, EvalOptions, stream
    from ftspace.errors import FtspaceError
    from ftspace.runs import Run

    seconds = _eval_seconds(run_dir, options, token, tier) * duration_factor()
    cancel, timed_out = threading.Event(), threading.Event()
    timer = threading.Timer(seconds - min(EVAL_MARGIN_S, seconds / 2), lambda: (timed_out.set(), cancel.set()))
    timer.daemon = True

    def items():
        timer.start()
        try:
            yield from stream(Run(Path(run_dir)), EvalOptions(**options), token, cancel=cancel, checked=checked,
                              against=Run(Path(against_dir)) if against_dir else None)
        except Cancelled:
            if not timed_out.is_set():
                raise
            raise FtspaceError(f"The evaluation did not fit one ZeroGPU call of your tier ({seconds:.0f} s): lower "
                               "the test rows or the max new tokens (or sign in, or PRO, for longer calls). Nothing "
                               "was saved.") from None
        finally:
            timer.cancel()

    yield from carrying_errors(items())


# --- errors across the fork: `spaces` hands the visitor only the class name of an exception raised in a GPU call
# ("ZeroGPU worker error: DataError") unless it is a gr.Error; ftspace's own errors cross as values instead.


@dataclass(frozen=True)
class CarriedError:
    kind: str  # the ftspace.errors class name
    message: str


def carrying_errors(items):
    """Inside a GPU generator: its items, and an ftspace error as a last CarriedError item (`carried` raises it
    again in the app process). Anything else is a bug and keeps its traceback."""
    from ftspace.errors import FtspaceError

    try:
        yield from items
    except FtspaceError as e:
        yield CarriedError(type(e).__name__, str(e))


def carried(items):
    """A GPU generator's items in the app process, with a carried ftspace error raised again as itself (and a chat
    call's `Loaded` note kept for sizing the next one)."""
    from ftspace import errors

    try:
        for item in items:
            if isinstance(item, Loaded):  # measured in the fork: the next chat call's load budget
                CHAT_LOADS.append(item.seconds)
                continue
            if isinstance(item, CarriedError):
                kind = getattr(errors, item.kind, None)
                if not (isinstance(kind, type) and issubclass(kind, errors.FtspaceError)):
                    kind = errors.FtspaceError
                raise kind(item.message)
            yield item
    finally:
        getattr(items, "close", lambda: None)()  # a reader that left (a closed page) ends the GPU call now


# --- driving a run from its owner's event


class QuotaError(Exception):
    """ZeroGPU refused the call for this visitor (quota used up, duration not allowed): not retried."""


def drive(run, token: str | None, tier: str, prepare: bool = True, calls: int | None = None):
    """Train `run` to its end (or until ZeroGPU says no) in GPU calls made from this thread, which must
    be the owner's Gradio event. Yields after preparing and after every call; the run's status says
    the rest. A closed page (the generator closed) or any failure leaves the run resumable, never
    `running`. With `calls`, at most that many GPU calls: the run then waits in the queue again for the
    caller's next request (an agent's next poll)."""
    from ftspace import offload
    from ftspace.engine.prepare import read_prepared
    from ftspace.errors import FtspaceError

    lease(run, 1800)  # preparing: downloads and tokenizing, on CPU
    run.set_status(status="running", waiting=False, error=None, phase="preparing", tier=tier, token_expired=False)
    finished = False
    try:
        if prepare and read_prepared(run) is None:  # a resumed run was prepared by its first drive
            try:
                # in a helper process even off ZeroGPU: this process trains next, Unsloth imported first
                offload.call("ftspace.engine.prepare:prepare_in_place", log_path=run.log_path, isolate=True,
                             run_dir=str(run.path), token=token)
            except FtspaceError as e:
                run.set_status(status="failed", error=str(e), phase=None)
                finished = True
                return
            except Exception as e:  # the helper process crashed: a bug, its traceback is in the run's log
                run.set_status(status="failed", error=f"preparing the run failed: {_first_line(e)} (see log.txt)",
                               phase=None)
                finished = True
                return
        yield
        n = run.read_status().get("slice") or 0
        made = 0
        while True:
            if calls is not None and made >= calls:
                run.set_status(status="queued", waiting=True, phase="waiting for its next GPU call")
                finished = True
                return
            made += 1
            n += 1
            too_long = fixed_cost_refusal(run, tier)
            if too_long:
                run.set_status(status="interrupted", error=too_long, phase=None)
                finished = True
                return
            seconds = call_seconds(tier, training_work_s(run))
            run.set_status(slice=n, phase="training", call_s=seconds)
            step_before = run.read_status().get("step") or 0
            try:
                outcome = _train_call(run, seconds, tier)
            except QuotaError as e:
                run.set_status(status="interrupted", error=str(e), phase=None)
                finished = True
                return
            except Exception as e:  # the fork died, was aborted, or anything else: keep the run resumable
                refusal, st = zerogpu_refusal(e), run.read_status()
                aborted = refusal == "aborted"
                asked = st.get("call_s") or seconds  # a retry may have asked for less
                no_step = (st.get("step") or 0) == step_before
                checkpoint = run.last_checkpoint()  # where the next call starts: the steps after it are lost
                run.set_status(status="interrupted", phase=None, error=call_failure(n, asked, e), call_aborted=aborted,
                               token_expired=refusal == "expired",
                               step=int(checkpoint.name.split("-")[1]) if checkpoint else 0,
                               **({"load_exceeds_s": asked * duration_factor()} if aborted and no_step else {}))
                finished = True
                return
            run.set_status(call_aborted=False, load_exceeds_s=None)
            st = run.read_status()
            if outcome != "sliced" or st.get("status") not in ("running", "stopping"):
                finished = True
                return
            yield
    finally:
        if not finished and run.read_status().get("status") in ("running", "stopping", "queued"):
            run.set_status(status="interrupted", phase=None, error=(
                "paused: on ZeroGPU a run trains while its page is open (the GPU time is yours, per call); "
                "press Resume to continue from the last checkpoint"))
        (run.path / "worker.json").unlink(missing_ok=True)


def run_sliced(run_dir: str, tier: str = "pro", token: str | None = None) -> dict:
    """`drive` to the end without a page (the CLI, tests and bench on CPU, where GPU calls are no-ops)."""
    from ftspace.runs import Run

    run = Run(Path(run_dir))
    for _ in drive(run, token, tier):
        pass
    return run.status()


def _train_call(run, seconds: int, tier: str) -> str:
    """One training call, its lease renewed before every attempt: retried while ZeroGPU has no GPU free; asked
    once more, shorter, when the duration is refused (at the seconds the quota has left, or at the shortest tier's
    cap: ZeroGPU bills the x-ip-token's account, whose tier the sign-in may not tell), never below the minimum;
    QuotaError when the visitor may not have it."""
    shorter_asked = False
    for delay in (*RETRY_DELAYS_S, None):
        lease(run, seconds * duration_factor() + LEASE_MARGIN_S + (delay or 0))  # a poll must not see it abandoned
        run.set_status(call_s=seconds)
        try:
            return train_slice(str(run.path), seconds)
        except Exception as e:
            kind = zerogpu_refusal(e)
            if kind == "quota":
                shorter = None if shorter_asked else shorter_call_s(e, seconds, tier)
                if shorter is None:
                    raise QuotaError(quota_message(e)) from None
                seconds, shorter_asked = shorter, True
                continue
            if kind != "busy" or delay is None:
                raise
            time.sleep(delay)


def shorter_call_s(e: Exception, asked: int, tier: str) -> int | None:
    """The duration to ask for once more after ZeroGPU refused `asked` seconds, or None: the seconds its message
    says are left ("60s requested vs. 23s left"), or for a duration larger than allowed the anonymous tier's cap;
    never below the minimum a call needs.

    >>> import gradio as gr
    >>> shorter_call_s(gr.Error("You have exceeded your free ZeroGPU quota (60s requested vs. 41s left). Try again "
    ...                          "in 0:10:00."), 60, "free")
    41
    >>> shorter_call_s(gr.Error("(60s requested vs. 7s left)"), 60, "free") is None  # too short to train in
    True
    >>> shorter_call_s(gr.Error("The requested GPU duration (120s) is larger than the maximum allowed"), 120, "free")
    60
    """
    text = str(e)
    left = re.search(r"vs\. (\d+)s left", text)
    if left:
        want = int(int(left.group(1)) / duration_factor())
    elif "larger than the maximum allowed" in text:
        want = int(TIERS["anonymous"].max_call_s / duration_factor())
    else:
        return None
    return want if min(MIN_CALL_S, max_call_s(tier)) / duration_factor() <= want < asked else None


def call_failure(n: int, seconds: int, e: Exception) -> str:
    """The run's one-line error when GPU call `n` (asked for `seconds`) ended without finishing its slice."""
    kind = zerogpu_refusal(e)
    if kind == "expired":
        return (f"GPU call {n} was refused: this page's ZeroGPU sign-in token expired. The page asks again with a "
                "fresh one; if the run stays interrupted, reload the page and press Resume (it continues from its "
                "last checkpoint).")
    if kind == "aborted":
        return (f"GPU call {n} was ended by ZeroGPU: it ran past the {seconds} s it asked for. Resume the run; it "
                "continues from its last checkpoint, and the next call asks for more time.")
    return f"GPU call {n} ended early: {_first_line(e)}. Resume the run; it continues from its last checkpoint."


def zerogpu_refusal(e: Exception) -> str | None:
    """'busy' (no GPU free now: retry), 'quota' (this visitor may not have the call: do not), 'expired' (the
    page's proxy token ran out), 'aborted' (ZeroGPU ended a call that overran), or None. `spaces` raises gr.Error
    with a title; these are its titles and texts (spaces/zero/client.py, wrappers.py)."""
    title, text = str(getattr(e, "title", "") or ""), str(e)
    if "No GPU was available" in text or title == "ZeroGPU queue timeout":
        return "busy"
    if title in ("ZeroGPU quota exceeded", "ZeroGPU illegal duration", "ZeroGPU pending credits exceeded") or \
            re.search(r"quota|GPU limit|larger than the maximum allowed", text, re.I):
        return "quota"
    if "Expired ZeroGPU proxy token" in text:
        return "expired"
    if "GPU task aborted" in text:
        return "aborted"
    return None


def quota_message(e: Exception) -> str:
    """One line: what ZeroGPU said, when the quota comes back, and that the run waits to be resumed."""
    text = _first_line(e)
    wait = re.search(r"Try again in (?:(\d+) days?, )?(\d+):(\d\d):(\d\d)", text)
    when = ""
    if wait:
        days, h, m, s = (int(g or 0) for g in wait.groups())
        seconds = ((days * 24 + h) * 60 + m) * 60 + s
        reset = time.strftime("%H:%M UTC", time.gmtime(time.time() + seconds))
        when = f" Your ZeroGPU quota comes back in {seconds // 3600} h {seconds % 3600 // 60:02d} min (at {reset})."
    elif "larger than the maximum allowed" in text:
        when = " This account tier does not allow calls that long."
    return (f"ZeroGPU refused the GPU call: {text}.{when} The run is paused at its last checkpoint: press "
            "Resume then (signing in, or a PRO account, gives more GPU time a day).").replace("..", ".")


def lease(run, seconds: float):
    """The app process drives this run until `seconds` from now unless renewed (see Run.worker_alive)."""
    import psutil

    from ftspace.runs import write_json_atomic

    write_json_atomic(run.path / "worker.json", {"pid": os.getpid(), "started": psutil.Process().create_time(),
                                                 "lease_until": time.time() + seconds, "driver": "zerogpu"})


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
