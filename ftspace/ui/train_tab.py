"""Train tab: the model, a preset, estimate and start first; every RunConfig field (generated) folded below; stop,
resume, live progress."""

from __future__ import annotations

import shlex
import time

import gradio as gr

from ftspace import env, models, offload, runs, targets
from ftspace.config import PRESETS
from ftspace.errors import FtspaceError
from ftspace.owners import UPLOADED, scrub_paths
from ftspace.rewards import describe
from ftspace.ui import sweep_panel
from ftspace.ui.common import caller_of, config_fields, config_from_values, control_for, log_tail, on_space, \
    open_in, own_run, owner_of, scratch_file, user_errors, visible_runs, visitor_tier


def hardware_text() -> str:
    hw = models.hardware()
    storage = ""
    if on_space() and env.persistent_storage() is None:
        storage = ("\n\n**No persistent storage on this Space:** runs are lost when it restarts. Push your adapter "
                   "to the Hub (Publish) to keep it.")
    if hw["kind"] == "zerogpu":
        quotas = ", ".join(f"{name} {minutes} min" for name, minutes in targets.zerogpu_quotas().items())
        return (f"**Hardware:** {hw['name']}. Training runs as a series of short GPU calls made while this page is "
                f"open, each billed to **your own** daily ZeroGPU quota ({quotas}; sign in for more). Close the page "
                "and the run pauses at its last checkpoint: press Resume when you are back." + storage)
    try:
        precision = f"; computes in {models.precision_text('auto', hw['kind'])}"
    except FtspaceError as e:  # FTSPACE_COMPUTE_DTYPE misspelt: said here, the app still starts
        precision = f". **{e}**"
    if hw["kind"] == "cuda":
        return f"**Hardware:** CUDA: {hw['name']}, {hw['memory']}{precision}" + storage
    return (f"**Hardware:** CPU only ({hw['cores']} cores): fine for the bundled model and quick demos{precision}"
            + storage)


JOBS_FIELDS = ("jobs_flavor", "jobs_timeout_minutes")  # shown when the run trains on Hugging Face Jobs
GRPO_FIELDS = tuple(f.name for f in config_fields() if f.metadata["group"] == "rewards")  # shown for method grpo


def build(ui: dict):
    """The simple path first: the base model, a preset, the dataset in use, Estimate and Start; every other setting
    folded away under "All settings" (the advanced ones folded again inside it)."""
    ui["hardware"] = gr.Markdown(hardware_text())
    fields = {f.name: f for f in config_fields()}
    basic = [f for f in fields.values() if not f.metadata["advanced"] and f.name != "model_name"]
    advanced = [f for f in fields.values() if f.metadata["advanced"]]
    with gr.Row(equal_height=True):
        ui["model_name"] = control_for(fields["model_name"], scale=3)
        ui["preset"] = gr.Dropdown(list(PRESETS), value=None, label="Preset (fills the settings)", scale=2)
    ui["train_dataset"] = gr.Markdown("**Dataset:** example:facts · not checked yet (the Dataset tab checks it)",
                                      elem_id="train-dataset")
    with gr.Row():
        ui["estimate_btn"] = gr.Button("Estimate")
        ui["start"] = gr.Button("Start training", variant="primary")
        ui["stop"] = gr.Button("Stop", variant="stop", interactive=False)  # enabled when they can act
        ui["resume"] = gr.Button("Resume", interactive=False)
    ui["estimate"] = gr.Markdown()
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            with gr.Accordion(f"All settings ({len(fields) - 1} more: data, LoRA, training)", open=False,
                              elem_id="all-settings"):
                for f in basic:
                    ui[f.name] = control_for(f, **({"visible": False} if f.name in JOBS_FIELDS + GRPO_FIELDS else {}))
                ui["rewards_help"] = gr.Markdown("**The rewards** (method grpo):\n\n" + "\n".join(
                    f"- **{line.split(':', 1)[0]}**:{line.split(':', 1)[1]}" for line in describe()), visible=False)
                with gr.Accordion("Advanced", open=False):
                    for f in advanced:
                        ui[f.name] = control_for(f, **({"visible": False} if f.name in GRPO_FIELDS else {}))
        with gr.Column(scale=3):
            ui["run_id"] = gr.Dropdown([], label="Run", allow_custom_value=True, interactive=True)
            ui["run_status"] = gr.Markdown("No run yet.")
            with gr.Row(visible=False) as ui["next_steps"]:  # once the selected run has its adapter
                ui["to_eval"] = gr.Button("Evaluate →", variant="primary")
                ui["to_chat"] = gr.Button("Chat with it →", variant="primary")
            ui["loss_plot"] = gr.LinePlot(x="step", y="loss", color="series", color_title="curve", height=280,
                                          elem_id="loss-plot",
                                          label="Loss (DPO / ORPO: and the reward margin; GRPO: the rewards)")
            ui["log_tail"] = gr.Textbox(label="Log: ftspace's own lines (what libraries print stays in the run's log "
                                                "file)", lines=8, max_lines=8, autoscroll=True, interactive=False)
            with gr.Accordion("The same run from the command line", open=False):
                ui["cli_command"] = gr.Textbox(label="Command", interactive=False)
                ui["cli_yaml"] = gr.Code(language="yaml", label="run.yaml", elem_id="cli-yaml")
                ui["yaml_download"] = gr.DownloadButton("Download run.yaml")
            sweep_panel.build(ui)
    ui["timer"] = gr.Timer(1.0, active=False)


def wire(ui: dict, scheduler):
    fields = config_fields()
    controls = [ui[f.name] for f in fields]
    who = [ui["browser_id"]]
    progress_out = [ui["run_status"], ui["loss_plot"], ui["log_tail"], ui["timer"]]

    ui["preset"].change(apply_preset, [ui["preset"]], controls, api_visibility="private")
    ui["train_on"].change(lambda where: [gr.update(visible=where == "hf_jobs")] * len(JOBS_FIELDS), [ui["train_on"]],
                          [ui[name] for name in JOBS_FIELDS], queue=False, show_progress="hidden",
                          api_visibility="private")
    ui["method"].change(lambda method: [gr.update(visible=method == "grpo")] * (len(GRPO_FIELDS) + 1), [ui["method"]],
                        [ui[name] for name in GRPO_FIELDS] + [ui["rewards_help"]], queue=False, show_progress="hidden",
                        api_visibility="private")
    gr.on([c.change for c in controls], show_cli, controls, [ui["cli_command"], ui["cli_yaml"], ui["yaml_download"]],
          show_progress="hidden", queue=False, api_visibility="private")
    ui["estimate_btn"].click(estimate, who + controls, [ui["estimate"]], concurrency_id="estimate",
                             api_name="estimate")

    @user_errors
    def start(request: gr.Request, oauth_token: gr.OAuthToken | None, browser_id, *values):
        caller = caller_of(request, browser_id, oauth_token)
        run = targets.submit(scheduler, config_from_values(values), caller)  # the gate, then the queue
        return run_choices(caller.owner, run.id) + [gr.Timer(active=True)]

    @user_errors
    def train_on_gpu(browser_id, run_id, request: gr.Request, oauth_token: gr.OAuthToken | None,
                     profile: gr.OAuthProfile | None):
        """ZeroGPU: this visitor's own event waits for the run's turn, then makes its GPU calls (so ZeroGPU
        sees their token and bills their quota), showing progress between calls."""
        caller = caller_of(request, browser_id, oauth_token)
        run = _selected(run_id, caller.owner)
        if targets.target_for(run) != "zerogpu" or run.read_status().get("status") != "queued":
            return
        for _ in targets.drive(scheduler, run, caller, visitor_tier(profile)):
            yield progress(scheduler, run.id, caller.owner)[:3]
        yield progress(scheduler, run.id, caller.owner)[:3]
        st = run.read_status()
        if st["status"] != "completed" and st.get("error") and not st.get("token_expired"):  # that one: asked again
            raise FtspaceError(st["error"])

    @user_errors
    def train_again_on_gpu(browser_id, run_id, request: gr.Request, oauth_token: gr.OAuthToken | None,
                           profile: gr.OAuthProfile | None):
        """ZeroGPU: the page's next request after its drive ended. Where a GPU call was refused because the page's
        proxy token had expired, this request carries a fresh one: the run resumes and the drive goes on (once per
        drive: this event does not start another). Anything else: nothing to do."""
        caller = caller_of(request, browser_id, oauth_token)
        run = _selected(run_id, caller.owner)
        st = run.read_status()
        if targets.target_for(run) != "zerogpu" or st.get("status") != "interrupted" or not st.get("token_expired"):
            return
        targets.resume(scheduler, run, caller)
        yield from train_on_gpu(browser_id, run_id, request, oauth_token, profile)

    @user_errors
    def stop(browser_id, run_id, request: gr.Request, oauth_token: gr.OAuthToken | None = None):
        caller = caller_of(request, browser_id, oauth_token)
        run = _selected(run_id, caller.owner)
        targets.stop(scheduler, run, caller)
        if targets.target_for(run) == "jobs":
            gr.Info(f"Cancelling the job of {run.id}; Resume continues from the last checkpoint it pushed.")
        else:
            gr.Info(f"Stopping {run.id} after the current step; the adapter will be saved.")

    @user_errors
    def resume(browser_id, run_id, request: gr.Request, oauth_token: gr.OAuthToken | None = None):
        caller = caller_of(request, browser_id, oauth_token)
        targets.resume(scheduler, _selected(run_id, caller.owner), caller)
        return gr.Timer(active=True)

    def poll(browser_id, run_id, request: gr.Request):
        return progress(scheduler, run_id, owner_of(request, browser_id))

    started = ui["start"].click(start, who + controls, [ui["run_id"], ui["timer"]], concurrency_id="control",
                                api_name="start")
    ui["stop"].click(stop, who + [ui["run_id"]], None, concurrency_id="control", api_name="stop")
    resumed = ui["resume"].click(resume, who + [ui["run_id"]], [ui["timer"]], concurrency_id="control",
                                 api_name="resume")
    if env.on_zerogpu():  # GPU calls from the owner's own event; it waits without holding other queues
        gpu = dict(concurrency_id="zerogpu-train", concurrency_limit=None, show_progress="minimal")
        # and after a drive (whatever its end), the page asks once more: a fresh token where the last one expired
        started.success(train_on_gpu, who + [ui["run_id"]], progress_out[:3], api_name="train_on_gpu", **gpu).then(
            train_again_on_gpu, who + [ui["run_id"]], progress_out[:3], api_name="train_again_on_gpu", **gpu)
        resumed.success(train_on_gpu, who + [ui["run_id"]], progress_out[:3], api_visibility="private", **gpu).then(
            train_again_on_gpu, who + [ui["run_id"]], progress_out[:3], api_visibility="private", **gpu)
    # Polling reads files only: no queue slot is held while a run trains.
    sweep_panel.wire(ui, scheduler, controls, who, visitor_config)
    ui["timer"].tick(poll, who + [ui["run_id"]], progress_out, show_progress="hidden", concurrency_limit=None,
                     api_name="progress")
    ui["run_id"].change(poll, who + [ui["run_id"]], progress_out, show_progress="hidden", api_visibility="private")

    def next_steps(browser_id, run_id, request: gr.Request):
        """The buttons that can act on the selected run: Stop while it is queued or trains, Resume once it stopped
        short of its steps, the next steps once it has its adapter."""
        try:
            run = own_run(run_id, owner_of(request, browser_id)) if run_id else None
        except FtspaceError:
            run = None
        st = run.status() if run else {}
        done = bool(run and (run.adapter_dir / "adapter_config.json").exists() and st["status"] not in runs.ACTIVE)
        return (gr.Row(visible=done), gr.Button(interactive=st.get("status") in ("queued", "running")),
                gr.Button(interactive=bool(run) and runs.resume_refusal(run.id, st) is None))

    hidden = dict(api_visibility="private", show_progress="hidden")
    ui["run_status"].change(next_steps, who + [ui["run_id"]], [ui["next_steps"], ui["stop"], ui["resume"]],
                            queue=False, **hidden)
    ui["to_eval"].click(open_in("evaluate"), [ui["run_id"], ui["browser_id"]], [ui["tabs"], ui["eval_run"]], **hidden)
    ui["to_chat"].click(open_in("chat"), [ui["run_id"], ui["browser_id"]], [ui["tabs"], ui["chat_run"]], **hidden)
    ui["dataset"].input(lambda text: f"**Dataset:** {text or '(none)'} · not checked yet (the Dataset tab checks it)",
                        [ui["dataset"]], [ui["train_dataset"]], queue=False, **hidden)
    return start


def visitor_config(request, browser_id, values, oauth_token=None):
    """(caller, RunConfig) from the controls, through the gate (ftspace.targets.admit): the dataset as this
    visitor's own ("qa.csv (uploaded)" is their upload), everything checked to be theirs to use."""
    caller = caller_of(request, browser_id, oauth_token)
    return caller, targets.admit(config_from_values(values), caller, queue=False)


def run_choices(owner: str, selected: str | None = None):
    ids = [r.id for r in visible_runs(owner)]
    return [gr.Dropdown(choices=ids, value=selected if selected in ids else (ids[0] if ids else None))]


def _selected(run_id, owner):
    if not run_id:
        raise FtspaceError("Pick a run first (or start one).")
    return own_run(run_id, owner)


def apply_preset(name):
    values = PRESETS.get(name or "", {})
    return [gr.update(value=values[f.name]) if f.name in values else gr.update() for f in config_fields()]


def show_cli(*values):
    try:
        cfg = config_from_values(values)
    except FtspaceError as e:
        return f"# fix first: {e}", "", gr.DownloadButton(value=None)
    note = ""
    if cfg.dataset.endswith(UPLOADED):  # the file is the visitor's own: the YAML names it, beside run.yaml
        cfg.dataset = cfg.dataset[: -len(UPLOADED)]
        note = f"   # with your {shlex.quote(cfg.dataset)} in the same folder"
    text = cfg.to_yaml()
    path = scratch_file("yaml", "run.yaml", text.encode())
    command = "ftspace train --config run.yaml" + note
    return command, text, gr.DownloadButton(value=path)


@user_errors
def estimate(request: gr.Request, oauth_token: gr.OAuthToken | None, browser_id, *values):
    from ftspace.planning import describe

    caller, cfg = visitor_config(request, browser_id, values, oauth_token)  # through the gate
    token = caller.token
    plan = offload.call("ftspace.planning:plan", config=cfg.to_dict(), token=token, owner=targets.runs_owner(caller))
    quote = targets.quote(plan, cfg, caller)  # time and cost on Hugging Face Jobs
    return describe(plan, quote["text"] if quote else None)


def progress(scheduler, run_id, owner):
    """Status line, loss curves and log tail for the selected run; stops the timer when it has ended. It only reads
    the run's folder: a Jobs run is followed from where it starts (and from `reattach`), and a completed run's model
    starts loading for chat from the queue's loop (chat_tab.load_finished_run)."""
    import pandas as pd

    if not run_id:
        return "No run yet.", None, "", gr.Timer(active=False)
    try:
        run = own_run(run_id, owner)
    except FtspaceError as e:
        return str(e), None, "", gr.Timer(active=False)
    st = run.status()
    events = run.all_events()
    points = [{"step": e["step"], "loss": e["loss"], "series": "train"} for e in events if "loss" in e]
    points += [{"step": e["step"], "loss": e["eval_loss"], "series": "eval"} for e in events if "eval_loss" in e]
    # DPO / ORPO: the reward margin (chosen minus rejected) beside the loss; it should grow
    points += [{"step": e["step"], "loss": e["reward_margin"], "series": "reward margin"} for e in events
               if "reward_margin" in e]
    points += [{"step": e["step"], "loss": e["eval_reward_margin"], "series": "eval reward margin"} for e in events
               if "eval_reward_margin" in e]
    cfg = run.config()  # read once: this runs every second while a page follows the run
    if cfg.method == "grpo":
        points += grpo_points(events, cfg.max_completion_length)
    last = next((e for e in reversed(events) if "loss" in e), {})
    parts = [f"**{run.id}**: **{st['status']}**"]
    if st["status"] == "queued" and st.get("waiting"):
        position = scheduler.position(run)
        parts.append(f"waiting for the GPU: position {position} in the queue" if position else "waiting")
    if st.get("total_steps"):
        parts.append(f"step {st.get('step', 0)}/{st['total_steps']}")
        parts.append(progress_bar(st.get("step", 0), st["total_steps"]))
    if st["status"] in ("running", "stopping") and isinstance(st.get("started"), (int, float)):
        parts.append(f"{runs.duration_shown(max(0.0, time.time() - st['started']))} elapsed")
    elif st["status"] not in runs.ACTIVE and (trained := runs.training_seconds(st)) is not None:
        parts.append(f"trained in {runs.duration_shown(trained)}")
    if st.get("slice"):
        sized = ", ".join(filter(None, [f"{st['call_s']} s" if st.get("call_s") else "",
                                        f"{st['tier']} tier" if st.get("tier") else ""]))
        parts.append(f"GPU call {st['slice']}" + (f" ({sized})" if sized else ""))
    if st.get("job"):
        parts.append(f"on Hugging Face Jobs ({st['job']['flavor']}, billed to {st['job']['namespace']}): "
                     f"[job {st['job']['id']}]({st['job']['url']})")
    if st.get("phase") == "preparing" and st["status"] == "running":
        parts.append("preparing on CPU: downloading and tokenizing")
    if st.get("eta_s") is not None and st["status"] == "running":
        parts.append(f"about {runs.duration_shown(st['eta_s'])} left")
    if "tokens_per_s" in last:
        parts.append(f"{last['tokens_per_s']:.0f} tokens/s")
    if st.get("compute_dtype"):
        parts.append(f"computing in {st['compute_dtype']} on {'GPU' if st.get('device') == 'cuda' else 'CPU'}")
    if isinstance(st.get("train_loss"), float):
        parts.append(f"loss {st['train_loss']:.4f}")
    if isinstance(st.get("eval_loss"), float):
        parts.append(f"eval loss {st['eval_loss']:.4f}")
    if "reward_accuracy" in last:
        parts.append(f"chosen preferred in {last['reward_accuracy']:.0%} of the batch, reward margin "
                     f"{last['reward_margin']:.3f}")
    if "reward" in last:
        parts.append(f"mean reward {last['reward']:.3f}" + (f", replies {last['completion_length']:.0f} tokens long"
                                                             if "completion_length" in last else ""))
    if st.get("error"):
        parts.append(f"\n\n{scrub_paths(st['error'])}")
    if st["status"] == "completed" and st.get("stopped_early"):
        parts.append("(stopped early; resumable)")
    if memorised(st, cfg.method):
        parts.append(f"\n\n**A training loss of {st['train_loss']:.2f} with nothing held out may mean the model "
                     "learned its rows by heart** rather than what they teach: check it on rows it never saw "
                     "(Evaluate, or validation rows: validation_size) before you rely on it.")
    log = scrub_paths(log_tail(run.log_path))
    active = st["status"] in runs.ACTIVE
    return " · ".join(parts) + samples_table(events), pd.DataFrame(points) if points else None, log, \
        gr.Timer(active=active)


MEMORISED_LOSS = 0.2  # a final training loss below this, with no validation loss to compare, is worth a warning


def memorised(st: dict, method: str = "sft") -> bool:
    """A completed SFT run whose training loss fell very low with no validation loss to tell learning from memorising
    (a GRPO or preference loss is on another scale).

    >>> memorised({"status": "completed", "train_loss": 0.02}), memorised({"status": "completed", "train_loss": 0.8})
    (True, False)
    >>> memorised({"status": "completed", "train_loss": 0.02, "eval_loss": 0.03})
    False
    >>> memorised({"status": "completed", "train_loss": 0.004}, "grpo")
    False
    """
    return (method == "sft" and st.get("status") == "completed" and isinstance(st.get("train_loss"), (int, float))
            and st["train_loss"] < MEMORISED_LOSS and not isinstance(st.get("eval_loss"), (int, float)))


def grpo_points(events: list[dict], longest: int) -> list[dict]:
    """GRPO: per step (the plot's series), the mean reward and each reward's, the replies' mean length as a share of
    the longest allowed (`longest` tokens: on the rewards' scale), and the KL to the base where it is held."""
    points = []
    for e in events:
        if "reward" not in e:
            continue
        points.append({"step": e["step"], "loss": e["reward"], "series": "mean reward (weighted)"})
        points += [{"step": e["step"], "loss": v, "series": f"reward: {k[7:]}"} for k, v in e.items()
                   if k.startswith("reward_") and k != "reward_std"]
        if "completion_length" in e:
            points.append({"step": e["step"], "loss": e["completion_length"] / longest,
                           "series": f"reply length (share of {longest} tokens)"})
        if "kl" in e:
            points.append({"step": e["step"], "loss": e["kl"], "series": "KL to the base"})
    return points


def samples_table(events: list[dict]) -> str:
    """GRPO: the newest sampled replies with their rewards, as a table under the status line."""
    latest = next((e for e in reversed(events) if e.get("samples")), None)
    if latest is None:
        return ""
    cell = lambda text, n: " ".join(str(text).split())[:n].replace("|", "\\|").replace("<", "&lt;")  # noqa: E731
    rows = [f"\n\n**Replies at step {latest['step']}** (a few, with their rewards):\n",
            "| prompt | reply | answer | rewards |", "| --- | --- | --- | --- |"]
    for r in latest["samples"]:
        scores = ", ".join(f"{k} {v:g}" for k, v in r["rewards"].items() if v is not None)
        rows.append(f"| {cell(r['prompt'], 120)} | {cell(r['completion'], 240)} | {cell(r.get('answer', ''), 40)} | "
                    f"{scores} |")
    return "\n".join(rows)


def progress_bar(step: int, total: int, width: int = 20) -> str:
    """The run's progress as a bar of `width` cells and a percentage.

    >>> progress_bar(15, 30, 10)
    '`█████░░░░░` 50%'
    """
    share = min(1.0, max(0.0, step / total)) if total else 0.0
    filled = round(share * width)
    return f"`{'█' * filled}{'░' * (width - filled)}` {share:.0%}"


def reattach(caller):
    """On page load: select the caller's newest active run (or newest run) and poll it if active; their runs on
    Hugging Face Jobs are followed again (after a restart of the app, nothing else reads their jobs' logs)."""
    targets.follow_again(caller)
    items = visible_runs(caller.owner)
    active = [r for r in items if r.status()["status"] in runs.ACTIVE]
    chosen = (active or items or [None])[0]
    ids = [r.id for r in items]
    return gr.Dropdown(choices=ids, value=chosen.id if chosen else None), gr.Timer(active=bool(active))

