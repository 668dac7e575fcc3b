"""Train on Hugging Face Jobs: the same run on Hub hardware, billed per minute to the user's own account.

    start(cfg, token)     a run whose config says train_on: hf_jobs. Its config, any local data (and a local
                          base model) go to a private Hub repo of the user, <user>/ftspace-<run id>, with this
                          project's code; a job runs ftspace's own entry point there (ftspace.engine.job), with
                          the user's token as the job's secret
    stop(run, token)      cancel the job: the run is `stopped`, resumable from the last checkpoint the job pushed
    resume(run, token)    a new job continues from the repo's last checkpoint

Following a job's log (its events and status into the run store, the adapter pulled when it ends) is
ftspace.targets.jobs_log.

The job id, namespace, flavor, labels and repo live in the run's status.json under "job", so anything that
reads the run store knows where it trains. Which token acts is decided by ftspace.access (the visitor's own
on a shared app, never the server's); it is passed to huggingface_hub and to the job as a secret, never
written anywhere.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from ftspace import access, env, errors, owners, runs
from ftspace.targets import local
from ftspace.config import DATA_SUFFIXES, RunConfig
from ftspace.errors import ConfigError, FtspaceError, RunError

ROOT = Path(__file__).resolve().parent.parent.parent
UV_IMAGE = "ghcr.io/astral-sh/uv:python3.12-bookworm"  # huggingface_hub's own image for uv jobs
JOB_ONLY = ("gradio", "mcp", "spaces")  # app packages the job does not need
# The job's first minutes: pulling the image, installing the pinned packages, downloading the model
JOB_STARTUP_S = 300.0
# The job's own code: read by the bootstrap, put first on sys.path. The token comes from the HF_TOKEN secret.
# (Real files in a folder: the Hub cache's symlinks would lead the package's own paths into its blobs.)
BOOTSTRAP = ("import os, sys, huggingface_hub as h; d = os.path.abspath(h.snapshot_download(sys.argv[1], "
             "allow_patterns=['code/**'], local_dir='ftspace-code')); sys.path.insert(0, d + '/code'); "
             "from ftspace.engine.job import main; sys.exit(main(sys.argv[1:]))")
TERMINAL = ("COMPLETED", "CANCELED", "ERROR", "DELETED")


def is_job_run(st: dict) -> bool:
    return bool(st.get("job"))


def hub_api(token: str | None):
    from huggingface_hub import HfApi

    return HfApi(token=access.as_hub_arg(token))


def hub_error(e: Exception, doing: str) -> ConfigError:
    """One line for a refused or failed Hub call (the token itself never appears)."""
    status = getattr(getattr(e, "response", None), "status_code", None)
    if status in (401, 403):
        return ConfigError(f"The Hub refused the token while {doing} ({status}): use a token with write access and "
                           "the 'jobs' permission (on a Space: sign in again).")
    if status == 402:
        return ConfigError(f"The Hub asked for payment while {doing} (402): Jobs are billed to your account: add a "
                           "payment method at huggingface.co/settings/billing.")
    first = (str(e).splitlines() or [type(e).__name__])[0]
    return ConfigError(f"Hub error while {doing}: {first}")


# --- hardware and cost


def flavors(token: str | None = None) -> list[dict]:
    """The Jobs hardware the Hub offers, cheapest first: name, label, GPUs, and dollars per hour."""
    try:
        found = hub_api(token).list_jobs_hardware()
    except Exception as e:
        raise hub_error(e, "listing the Jobs hardware") from None
    out = []
    for hw in found:
        per_unit = 60.0 if hw.unit_label == "minute" else 3600.0 if hw.unit_label == "second" else 1.0
        acc = hw.accelerator
        out.append({"name": hw.name, "label": hw.pretty_name,
                    "gpus": int(acc.quantity) if acc and str(acc.quantity).isdigit() else 0,
                    "gpu": acc.model if acc else None, "vram": acc.vram if acc else None,
                    "cpu": hw.cpu, "ram": hw.ram, "usd_per_hour": round(hw.unit_cost_usd * per_unit, 4)})
    return sorted(out, key=lambda f: f["usd_per_hour"])


def estimate(plan: dict, flavor: dict, timeout_minutes: int) -> dict:
    """Time and cost on a flavor, from the run's plan (ftspace.planning.plan): the tokens it trains on over
    the flavor's catalogued speed (GPUs add up, data-parallel), plus the job's start; capped by the time limit."""
    from ftspace.planning import catalogued_tokens_per_s

    vcpus = re.match(r"\d+", flavor.get("cpu") or "")  # "8 vCPU"
    hw = {"kind": "cuda" if flavor["gpus"] else "cpu", "cores": int(vcpus.group()) if vcpus else 2}
    per_s = catalogued_tokens_per_s(plan["parameters"], hw) * max(1, flavor["gpus"])
    seconds = plan["train_tokens"] / per_s + JOB_STARTUP_S
    capped = seconds > timeout_minutes * 60
    seconds = min(seconds, timeout_minutes * 60)
    return {"flavor": flavor["name"], "seconds": round(seconds), "usd_per_hour": flavor["usd_per_hour"],
            "usd": round(seconds / 3600 * flavor["usd_per_hour"], 2), "capped_by_timeout": capped}


def flavor_names() -> list[str]:
    """The flavor names huggingface_hub knows (no Hub call: for a menu; `flavors` asks the Hub for prices)."""
    from huggingface_hub import JobHardware

    return [h.value for h in JobHardware]


def flavor(name: str, token: str | None) -> dict:
    """One flavor of the Hub's list (ConfigError naming the ones offered)."""
    offered = flavors(token)
    found = next((f for f in offered if f["name"] == name), None)
    if found is None:
        raise ConfigError(f"jobs_flavor {name!r} is not offered by Hugging Face Jobs: choose one of "
                          f"{', '.join(f['name'] for f in offered)}.")
    return found


def quote(plan: dict, cfg: RunConfig, token: str | None) -> dict:
    """Time, cost and who pays for a run on its Jobs flavor (`estimate`'s figures, and "text" for people: the Train
    tab's estimate, `ftspace estimate` and the MCP estimate_run)."""
    flavor_ = flavor(cfg.jobs_flavor, token)
    est = estimate(plan, flavor_, cfg.jobs_timeout_minutes)
    minutes = max(1, round(est["seconds"] / 60))
    cap = (f" (stopped there by the time limit of {cfg.jobs_timeout_minutes} min: raise jobs_timeout_minutes, or "
           "Resume it on a new job)") if est["capped_by_timeout"] else ""
    text = (f"on Hugging Face Jobs, {flavor_['label']} at ${flavor_['usd_per_hour']:.2f}/hour: about **{minutes} min** "
            f"with the job's start{cap}, about **${est['usd']:.2f}**, billed per minute to **your own** Hugging Face "
            "account (the job runs under your token; rough: from the model's size and a catalogued GPU speed)")
    return {**est, "text": text}


# --- submitting


def requirements() -> list[str]:
    """The pinned packages the job installs: requirements.txt's, without the app's own (gradio, mcp, spaces)."""
    pins = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        spec = line.split("#")[0].strip()
        if spec and re.split(r"[\[=<>~ ]", spec)[0].lower() not in JOB_ONLY:
            pins.append(spec)
    return pins


def job_command(repo_id: str, resume: bool) -> tuple[str, list[str], bool]:
    """(image, command, whether the job reads this project's code from the repo). On a Space the job runs in the
    Space's own image, whose code is the app's; elsewhere a uv image installs the pinned packages and the
    bootstrap puts the code pushed with the run first on the path."""
    tail = [repo_id] + (["--resume"] if resume else [])
    if env.on_space():
        space_image = f"https://huggingface.co/spaces/{os.environ['SPACE_ID']}"
        return space_image, ["python", "-m", "ftspace.engine.job", *tail], False
    withs = [arg for pin in requirements() for arg in ("--with", pin)]
    return UV_IMAGE, ["uv", "run", "--no-project", *withs, "python", "-c", BOOTSTRAP, *tail], True


def _code_files() -> list[tuple[Path, str]]:
    """This project's code as the job needs it: the package and the bundled example data."""
    out = [(p, "code/" + p.relative_to(ROOT).as_posix()) for p in sorted((ROOT / "ftspace").rglob("*"))
           if p.is_file() and "__pycache__" not in p.parts]
    out += [(p, f"code/examples/{p.name}") for p in sorted((ROOT / "examples").glob("*"))
            if p.suffix in (*DATA_SUFFIXES, ".yaml")]
    return out + [(ROOT / "pyproject.toml", "code/pyproject.toml")]


def job_config(cfg: RunConfig) -> tuple[RunConfig, list[tuple[Path, str]]]:
    """The config the job trains with, and the local files that travel with it (repo paths under run/). Local
    data files go along; Hub datasets stay ids; the bundled default model becomes its Hub id; a local model
    folder goes along."""
    from ftspace.data.load import resolve
    from ftspace.models import hub_id_for

    files, changes = [], {}
    for name in ("dataset", "test_dataset"):
        value = getattr(cfg, name).strip()
        if value and not value.startswith("example:") and resolve(value)[0] == "file":
            path = Path(value).expanduser().resolve()
            files.append((path, f"run/data/{name}/{path.name}"))
            changes[name] = f"run/data/{name}/{path.name}"
    model = hub_id_for(cfg.model_name)
    if env.multi_user():  # only what the gate admitted travels: a visitor's own uploads, never a server folder
        for path, _ in files:
            if not path.resolve().is_relative_to(env.uploads_dir().resolve()):
                raise ConfigError(f"{path.name}: on a shared app only your own uploads go with a Jobs run.")
        if not (model == "default" or access.hub_shaped(model) or model in owners.owner_models()):
            raise ConfigError(f"model_name {errors.escape(model, 80)!r}: on a shared app a Jobs run trains 'default', "
                              "a Hub model id (owner/name) or a model the app's owner offers.")
    if Path(model).expanduser().is_dir() and (not env.multi_user() or model in owners.owner_models()):
        folder = Path(model).expanduser().resolve()
        files += [(p, "run/model/" + p.relative_to(folder).as_posix()) for p in sorted(folder.rglob("*"))
                  if p.is_file()]
        model = "run/model"
    changes["model_name"] = model
    return cfg.replace(**changes, train_on="local"), files


def start(cfg: RunConfig, token: str | None, owner: str = "") -> runs.Run:
    """Create a run that trains on Jobs and submit it (RunError / ConfigError in one line; the run then shows
    failed with the reason)."""
    if not token:
        raise ConfigError("Training on Hugging Face Jobs needs your Hugging Face token: it runs under your account "
                          "and is billed to it (sign in, or set HF_TOKEN / `hf auth login`).")
    local.preflight(cfg)  # (the caller's access to its sources was checked by ftspace.targets.admit)
    run = runs.create(cfg, owner=owner)
    submit(run, token)
    return run


def submit(run: runs.Run, token: str | None, resume: bool = False) -> dict:
    """Push the run to its repo and start a job; the job's record, also kept in the run's status."""
    if not token:
        raise ConfigError("Training on Hugging Face Jobs needs your Hugging Face token (sign in, or set HF_TOKEN).")
    cfg, api = run.config(), hub_api(token)
    try:
        repo_id, image, labels, info = _push_and_run(run, cfg, api, token, resume)
    except Exception as e:  # one line, in the run's status too
        error = e if isinstance(e, FtspaceError) else hub_error(e, "submitting the job")
        run.set_status(status="failed", error=str(error), waiting=False)
        raise error from None
    job = {"id": info.id, "namespace": info.owner.name, "flavor": cfg.jobs_flavor, "labels": labels, "repo": repo_id,
           "url": info.url, "image": image, "submitted": time.time(), "lines": 0}
    history = run.read_status().get("jobs_history", []) + [info.id]
    run.set_status(status="queued", waiting=False, error=None, job=job, jobs_history=history, resume=resume,
                   job_stage=info.status.stage)
    (run.path / "STOP").unlink(missing_ok=True)
    log_line(run, f"submitted job {info.id} on {cfg.jobs_flavor} ({info.url}); run repo {repo_id} (private)")
    return job


def _push_and_run(run: runs.Run, cfg: RunConfig, api, token: str, resume: bool):
    """The run's repo filled (config, local files, code) and its job started: (repo id, image, labels, JobInfo)."""
    from huggingface_hub import CommitOperationAdd

    user = api.whoami()["name"]
    repo_id = (run.read_status().get("job") or {}).get("repo") or f"{user}/ftspace-{run.id}"
    api.create_repo(repo_id, private=True, exist_ok=True)
    image, command, with_code = job_command(repo_id, resume)
    job_cfg, files = job_config(cfg)
    files += _code_files() if with_code else []
    ops = [CommitOperationAdd("run/config.yaml", job_cfg.to_yaml().encode())]
    ops += [CommitOperationAdd(repo_path, str(path)) for path, repo_path in files]
    api.create_commit(repo_id, ops, commit_message=f"ftspace run {run.id}" + (" (resume)" if resume else ""))
    labels = {"app": "ftspace", "ftspace-run": re.sub(r"[^a-zA-Z0-9_-]", "-", run.id)}
    info = api.run_job(image=image, command=command, secrets={"HF_TOKEN": token}, flavor=cfg.jobs_flavor,
                       timeout=cfg.jobs_timeout_minutes * 60, labels=labels, name=f"ftspace-{labels['ftspace-run']}",
                       env={"PYTHONUNBUFFERED": "1"})
    return repo_id, image, info.labels or labels, info


def log_line(run: runs.Run, message: str):
    with open(run.log_path, "a", encoding="utf-8") as fh:
        fh.write(f"[ftspace jobs {time.strftime('%H:%M:%S')}] {message}\n")


# --- stop and resume


def cancel(run: runs.Run, api):
    """Cancel the job (`stopping` first: the follower's `stopped` may come as soon as the Hub has answered)."""
    job = run.set_status(status="stopping", cancel_requested=True, only_if_active=True)["job"]
    try:
        api.cancel_job(job_id=job["id"], namespace=job["namespace"])
    except Exception:
        run.set_status(status="running", cancel_requested=False, only_if_active=True)
        raise
    log_line(run, f"cancelling job {job['id']}")


def stop(run: runs.Run, token: str | None):
    """Cancel the run's job now (the follower then records it `stopped`)."""
    st = run.status()
    if st["status"] not in runs.ACTIVE:
        raise RunError(f"Run {run.id} is {st['status']}, not running: nothing to stop.")
    (run.path / "STOP").touch()
    try:
        cancel(run, hub_api(token))
    except Exception as e:
        raise hub_error(e, "cancelling the job") from None


def resume(run: runs.Run, token: str | None) -> dict:
    """A new job for a stopped, failed or interrupted job run, continuing from the repo's last checkpoint."""
    st = run.status()
    if st["status"] in runs.ACTIVE:
        raise RunError(f"Run {run.id} is already {st['status']}.")
    if st["status"] == "completed":
        raise RunError(f"Run {run.id} already completed all its steps: start a new run to train more.")
    run.set_status(status="queued", cancel_requested=False)
    return submit(run, token, resume=True)
