"""Hyperparameter sweeps: a small Optuna (TPE) search over learning rate, LoRA rank and alpha, and epochs.

Each trial is an ordinary run through the machine's queue (short, early-stopped on its validation rows),
scored on its best validation loss. The sweep is a file, so it resumes after a restart: finished trials
are told to a new study, an interrupted trial's run is resumed, and the search goes on from there.

    runs/sweeps/<id>/sweep.json    the base config, the search space, every trial (params, run, score)
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from pathlib import Path

from ftspace import env, runs
from ftspace.config import RunConfig
from ftspace.errors import ConfigError, RunError

# The searched fields and their ranges: what the fine-tuning guides tune first for LoRA.
SPACE = {
    "learning_rate": {"low": 2e-5, "high": 2e-3, "log": True},
    "lora_r": {"choices": [8, 16, 32, 64]},
    "alpha_ratio": {"choices": [1, 2]},  # lora_alpha = lora_r x this
    "num_train_epochs": {"low": 1.0, "high": 3.0, "step": 0.5},
}
TRIAL_VALIDATION = 0.1  # validation rows given to trials of a config that has none
TRIAL_PATIENCE = 2  # evaluations without a better eval loss before a trial stops early


def sweeps_root() -> Path:
    return env.runs_root() / "sweeps"


def _distributions():
    import optuna

    out = {}
    for name, spec in SPACE.items():
        if "choices" in spec:
            out[name] = optuna.distributions.CategoricalDistribution(spec["choices"])
        elif "step" in spec:
            out[name] = optuna.distributions.FloatDistribution(spec["low"], spec["high"], step=spec["step"])
        else:
            out[name] = optuna.distributions.FloatDistribution(spec["low"], spec["high"], log=spec["log"])
    return out


class Sweep:
    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def id(self) -> str:
        return self.path.name

    def read(self) -> dict:
        try:
            return json.loads((self.path / "sweep.json").read_text())
        except (OSError, ValueError):
            raise RunError(f"No sweep '{self.id}' (or its sweep.json is unreadable).") from None

    def write(self, data: dict):
        runs.write_json_atomic(self.path / "sweep.json", data)

    def base_config(self) -> RunConfig:
        return RunConfig.from_dict(self.read()["config"])

    def trial_config(self, params: dict) -> RunConfig:
        """An ordinary run's config: the base with the trial's values, held-out rows and early stopping."""
        base = self.base_config()
        values = dict(learning_rate=params["learning_rate"], lora_r=params["lora_r"],
                      lora_alpha=params["lora_r"] * params["alpha_ratio"],
                      num_train_epochs=params["num_train_epochs"])
        if base.validation_size <= 0:  # none, or automatic (which may hold out none): a trial is judged by them
            values["validation_size"] = TRIAL_VALIDATION
        if not base.eval_steps:
            values["eval_steps"] = base.save_steps
        if not base.early_stopping_patience:
            values["early_stopping_patience"] = TRIAL_PATIENCE
        return base.replace(**values)

    def best(self) -> dict | None:
        return best_trial(self.read())

    def best_config(self) -> RunConfig:
        best = self.best()
        if best is None:
            raise RunError(f"Sweep {self.id} has no finished trial yet.")
        cfg = self.trial_config(best["params"])
        base = self.base_config()  # the best values, without the trial-only validation and early stopping
        return cfg.replace(validation_size=base.validation_size, eval_steps=base.eval_steps,
                           early_stopping_patience=base.early_stopping_patience)


def best_trial(data: dict) -> dict | None:
    """The finished trial with the lowest score in a sweep's data, or None."""
    done = [t for t in data["trials"] if t.get("value") is not None]
    return min(done, key=lambda t: t["value"]) if done else None


def create(cfg: RunConfig, trials: int, owner: str = "", seed: int | None = None) -> Sweep:
    if trials < 1:
        raise ConfigError("--trials must be at least 1.")
    if cfg.max_steps > 0:
        raise ConfigError("A sweep searches num_train_epochs, so the base config must train by epochs: set "
                          "max_steps to -1.")
    sweep_id = f"{time.strftime('%Y%m%d-%H%M%S')}-sweep-{secrets.token_hex(2)}"
    path = sweeps_root() / sweep_id
    path.mkdir(parents=True)
    sweep = Sweep(path)
    sweep.write({"id": sweep_id, "owner": owner, "config": cfg.to_dict(), "trials_wanted": trials,
                 "seed": cfg.seed if seed is None else seed, "space": SPACE, "method": "optuna TPE",
                 "metric": "best validation loss (lower is better)", "trials": [], "created": time.time()})
    return sweep


def get(sweep_id: str) -> Sweep:
    if not runs.RUN_ID.match(sweep_id or ""):
        raise RunError(f"No sweep '{sweep_id}'.")
    sweep = Sweep(sweeps_root() / sweep_id)
    sweep.read()
    return sweep


def list_sweeps(owner: str | None = None) -> list[Sweep]:
    found = []
    for path in sorted(sweeps_root().glob("*/sweep.json"), reverse=True):
        sweep = Sweep(path.parent)
        try:
            if owner is None or sweep.read().get("owner") == owner:
                found.append(sweep)
        except RunError:
            continue
    return found


def score(run: runs.Run) -> float | None:
    """A finished trial's score: its best validation loss."""
    losses = [e["eval_loss"] for e in run.all_events() if isinstance(e.get("eval_loss"), (int, float))]
    st = run.status()
    if isinstance(st.get("eval_loss"), (int, float)):
        losses.append(st["eval_loss"])
    return min(losses) if losses else None


def _study(data: dict):
    """A study that knows every finished trial of the sweep (rebuilt after a restart)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = _distributions()
    study = optuna.create_study(direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=data["seed"] + len(data["trials"]),
                                                                   n_startup_trials=4))
    for t in data["trials"]:
        if t["status"] in runs.FINISHED:
            state = optuna.trial.TrialState.COMPLETE if t.get("value") is not None else optuna.trial.TrialState.FAIL
            study.add_trial(optuna.trial.create_trial(params=t["params"], distributions=dists, state=state,
                                                      value=t.get("value") if state.name == "COMPLETE" else None))
    return study, dists


def run_sweep(sweep: Sweep, scheduler, token: str | None = None, on_update=None, stop: threading.Event | None = None):
    """Run (or resume) the sweep's trials one after another through `scheduler`; `on_update(data)` after each
    change (with the trial that changed). Returns the sweep's data."""
    on_update = on_update or (lambda data, trial: None)
    stop = stop or threading.Event()
    data = sweep.read()
    while not stop.is_set():
        open_trial = next((t for t in data["trials"] if t["status"] not in runs.FINISHED), None)
        if open_trial is None:
            if len(data["trials"]) >= data["trials_wanted"]:
                break
            study, dists = _study(data)
            params = study.ask(dists).params
            run = scheduler.submit(sweep.trial_config(params), owner=data.get("owner", ""), token=token)
            open_trial = {"number": len(data["trials"]), "params": params, "run": run.id, "status": "queued"}
            data["trials"].append(open_trial)
            sweep.write(data)
            on_update(data, open_trial)
        run = runs.get(open_trial["run"])
        st = run.status()
        if st["status"] == "interrupted" or (st["status"] == "queued" and not st.get("waiting") and not st.get("job")
                                                            and not run.worker_alive()):
            scheduler.resubmit(run)  # after a restart: the trial's run continues from its checkpoint
        while not stop.is_set():
            scheduler.kick()
            st = run.status()
            if st["status"] in runs.FINISHED or st["status"] == "interrupted":
                break
            time.sleep(scheduler.poll)
        if st["status"] == "interrupted" or stop.is_set():
            continue
        open_trial.update(status=st["status"], value=score(run) if st["status"] == "completed" else None,
                          steps=st.get("step"), error=st.get("error"))
        best = best_trial(data)
        data["best"] = best and {"number": best["number"], "run": best["run"], "value": best["value"],
                                 "params": best["params"]}
        sweep.write(data)
        on_update(data, open_trial)
    return data


def table(data: dict) -> list[list]:
    """[trial, learning rate, rank, alpha, epochs, status, best eval loss, run] rows."""
    rows = []
    for t in data["trials"]:
        p = t["params"]
        rows.append([t["number"], f"{p['learning_rate']:.2e}", p["lora_r"], p["lora_r"] * p["alpha_ratio"],
                     p["num_train_epochs"], t["status"], None if t.get("value") is None else round(t["value"], 4),
                     t["run"]])
    return rows


COLUMNS = ["trial", "learning_rate", "lora_r", "lora_alpha", "epochs", "status", "best eval loss", "run"]
