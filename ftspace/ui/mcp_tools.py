"""The app's tools for agents: the Model Context Protocol server (`FTSPACE_MCP=1`, or `launch(mcp_server=True)`)
and the documented API are these functions and nothing else (the tabs' own endpoints stay callable by the
page but undocumented).

Each tool takes plain arguments and returns JSON text. Its docstring is what an agent reads: Gradio turns
the first paragraph into the tool's description and the Args section into its parameters. Who the caller
is and which token acts come from `access.api_caller` (an `Authorization: Bearer hf_...` header on a shared
app): the same ownership and token rules as for a visitor in the browser.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import gradio as gr

from ftspace import access, env, offload, owners, runs, targets
from ftspace.config import DATA_SUFFIXES, SHORT_REPLY_TOKENS, GenerationSettings, RunConfig
from ftspace.errors import ConfigError, DataError, FtspaceError, ModelError
from ftspace.ui import dataset_tab
from ftspace.ui.common import log_tail, user_errors

LOG_LINES = 12  # log lines a progress call returns


def _caller(request: gr.Request | None, need_owner: bool = True) -> targets.Caller:
    """Who calls, for the gate: on a shared app the Hub account of the Bearer token (a user's own token, asked
    of the Hub's whoami every few minutes), or "anonymous" where a tool needs no owner."""
    bearer = access.bearer_token(request.headers if request is not None else {})
    if env.multi_user() and bearer:
        identity = access.token_identity(bearer)
        return targets.Caller(identity.owner, bearer, identity.can_write)
    owner, token = access.api_caller(bearer)
    if need_owner and owner is None:
        raise ConfigError("This shared app needs your Hugging Face token for runs: send it as the header "
                          "`Authorization: Bearer hf_...` (your runs are then yours only, as when signed in).")
    return targets.Caller(owner or "anonymous", token)


def _json(data) -> str:
    return owners.scrub_paths(json.dumps(data, indent=1, ensure_ascii=False, default=str))


def _config(caller: targets.Caller, config_yaml: str, settings: dict | None) -> RunConfig:
    """A RunConfig from YAML text and/or an object of fields (the object wins), the dataset checked to be
    the caller's to read (a Hub id, example:NAME, or a file they uploaded with `rows_jsonl`)."""
    import yaml

    values = {}
    if (config_yaml or "").strip():
        try:
            loaded = yaml.safe_load(config_yaml)
        except yaml.YAMLError as e:
            raise ConfigError(f"config_yaml: not valid YAML ({str(e).splitlines()[0]}).") from None
        if not isinstance(loaded, dict):
            raise ConfigError("config_yaml: give a mapping of RunConfig fields, e.g. `dataset: example:alpaca`.")
        values.update(loaded)
    if settings is not None and not isinstance(settings, dict):
        raise ConfigError("settings: give an object of RunConfig fields, e.g. {\"max_steps\": 30}.")
    values.update(settings or {})
    return RunConfig.from_dict(values)


def _save_rows(owner: str, name: str, rows_jsonl: str) -> str:
    """Rows sent as text kept as an upload of this caller's (as the Dataset tab keeps a file); its dataset name."""
    from ftspace.ui.common import UPLOAD_LIMIT_MB

    data = rows_jsonl.encode()
    if len(data) > UPLOAD_LIMIT_MB * 2**20:
        raise DataError(f"rows_jsonl: {len(data) / 2**20:.0f} MB is over the {UPLOAD_LIMIT_MB} MB upload limit: "
                        "use a Hub dataset.")
    safe = owners.upload_name(name, "rows.jsonl")
    if not safe.endswith(tuple(s for s in DATA_SUFFIXES if s != ".parquet")):  # text rows: a .parquet name would not parse
        safe += ".jsonl"
    folder = f"api-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6:06d}"
    return owners.shown_dataset(str(owners.keep_upload(owner, safe, folder, data=data)))


def _run(run_id: str, owner: str) -> runs.Run:
    if not (run_id or "").strip():
        raise FtspaceError("run_id: give the id start_run returned (list_runs lists yours).")
    return owners.own_run(run_id.strip(), owner)


def _summary(run: runs.Run) -> dict:
    info = run.summary()
    info["dataset"] = owners.shown_dataset(info.get("dataset") or "")
    return info


ZEROGPU_IDENTITY = ("This Space trains on ZeroGPU, where each GPU call is billed to the identity Hugging Face's proxy "
                    "sends with a request (the x-ip-token header), and this request carries none: train from the "
                    "Space's page, or start the run with train_on: hf_jobs (billed to your token's account).")


def _ip_token(request: gr.Request | None) -> str | None:
    """The ZeroGPU identity Hugging Face's proxy sent with this request, if any."""
    return request.headers.get("x-ip-token") if request is not None else None


def _zerogpu_payer(request: gr.Request | None, run_or_cfg) -> None:
    """On ZeroGPU an agent's requests pay for its run's GPU calls: refuse, in one line, one that cannot."""
    if targets.target_for(run_or_cfg) == "zerogpu" and not _ip_token(request):
        raise ConfigError(ZEROGPU_IDENTITY)


def _advance_on_zerogpu(scheduler, run: runs.Run, caller, request: gr.Request | None):
    """On ZeroGPU: one GPU call of the run (or its place in the queue kept), from this request and billed to its
    x-ip-token (targets.advance). Elsewhere the run trains by itself: nothing to do."""
    if _ip_token(request):
        targets.advance(scheduler, run, caller, access.tier(signed_in=bool(caller.token)))


def register(scheduler) -> list[str]:
    """Add the tools to the Blocks being built; their names."""

    @user_errors
    def inspect_dataset(dataset: str = "", rows_jsonl: str = "", dataset_format: str = "auto",
                        prompt_column: str = "", response_column: str = "", max_seq_length: int = 1024,
                        request: gr.Request = None) -> str:
        """Check a dataset before training: detect its format (chat messages, instruction/response pairs,
        preference pairs, plain text ...), count rows kept and dropped (with the reason for each dropped row),
        and measure token lengths with the bundled model's tokenizer. Call this first.

        Args:
            dataset: a Hub dataset id ("tatsu-lab/alpaca"), a bundled example ("example:alpaca", "example:facts"), or the name of rows you sent earlier ("my.jsonl (uploaded)"). With rows_jsonl: the file name to keep them under.
            rows_jsonl: optional: your own rows as JSON Lines text, one object per line (e.g. {"instruction": ..., "output": ...} or {"messages": [...]}); kept as your upload for start_run.
            dataset_format: "auto" (detect), or one of RunConfig's formats ("messages", "alpaca", "columns", ...).
            prompt_column: with dataset_format "columns": the prompt column.
            response_column: with dataset_format "columns": the response column.
            max_seq_length: the training length in tokens; the report counts rows longer than it.

        Returns:
            JSON: "dataset" (the name to pass to start_run), "report" (format, rows_read, rows_kept, rows_dropped, dropped rows with row/field/reason, token statistics), "preview" (the first rows as training sees them).
        """
        caller = _caller(request, need_owner=bool(rows_jsonl))
        token = caller.token
        if rows_jsonl:
            dataset = _save_rows(caller.owner, dataset, rows_jsonl)
        if not (dataset or "").strip():
            raise DataError("dataset: give a Hub dataset id, example:NAME, or rows_jsonl with your rows.")
        path, _ = targets.admit_inspection(dataset, "default", int(max_seq_length or 1024), caller)  # the gate
        found = offload.call("ftspace.data.inspection:inspect_dataset", source=path,
                             dataset_format=dataset_format or "auto", prompt_column=prompt_column or "",
                             response_column=response_column or "", model_name="default",
                             max_seq_length=int(max_seq_length or 1024), limit=dataset_tab.INSPECT_ROWS,
                             token=token)
        report = dict(found["report"])
        report["source"] = owners.shown_dataset(path)
        if report.get("tokens"):
            report["tokens"] = {k: v for k, v in report["tokens"].items() if k != "lengths"}
        return _json({"dataset": owners.shown_dataset(path), "report": report, "preview": found["preview"][:3],
                      "tokens_error": found.get("tokens_error")})

    @user_errors
    def estimate_run(config_yaml: str = "", settings: dict | None = None, request: gr.Request = None) -> str:
        """Estimate a training run before starting it: training rows, parameters and trainable parameters,
        memory, optimizer steps and (once this model's step time is known) minutes.

        Args:
            config_yaml: RunConfig fields as YAML text (e.g. "dataset: example:alpaca\\nmax_steps: 30"); may be empty.
            settings: RunConfig fields as an object, applied over config_yaml (e.g. {"dataset": "example:facts", "lora_r": 16}). Unknown or out-of-range fields are refused with the field named.

        Returns:
            JSON: rows, train_rows, parameters, trainable_parameters, memory_gb, steps, seconds (when known), "hf_jobs" (with train_on hf_jobs: flavor, seconds, usd, usd_per_hour), and "summary", one sentence for people.
        """
        from ftspace.planning import describe

        caller = _caller(request, need_owner=False)
        token = caller.token
        cfg = targets.admit(_config(caller, config_yaml, settings), caller, queue=False)  # the gate
        out = offload.call("ftspace.planning:plan", config=cfg.to_dict(), token=token, owner=targets.runs_owner(caller))
        line = None
        quote = targets.quote(out, cfg, caller)  # on Hugging Face Jobs: time and cost, billed to the caller's account
        if quote:
            out["hf_jobs"] = quote
            line = out["hf_jobs"].pop("text")
        return _json({**out, "summary": describe(out, line).replace("**", "")})

    @user_errors
    def start_run(config_yaml: str = "", settings: dict | None = None, request: gr.Request = None) -> str:
        """Start a LoRA fine-tuning run (Unsloth) and return at once with its id; follow it with run_progress.
        One run trains at a time per machine: a later one waits in the queue (its status says so). With
        train_on "hf_jobs" it trains on Hugging Face Jobs instead (jobs_flavor, e.g. "a10g-large"; billed per minute
        to the account of the token you send; estimate_run with the same fields gives the time and cost). On a
        ZeroGPU Space the run trains while you poll: each run_progress call makes its next GPU call (a minute or
        two), billed to the x-ip-token your requests carry.

        Args:
            config_yaml: RunConfig fields as YAML text, e.g. "dataset: example:facts\\nmax_steps: 30". Fields: model_name, dataset, dataset_format, max_steps, num_train_epochs, learning_rate, lora_r, lora_alpha, max_seq_length, ... (estimate_run checks them without starting).
            settings: RunConfig fields as an object, applied over config_yaml, e.g. {"dataset": "my.jsonl (uploaded)", "max_steps": 60}. Learning by reward from prompts with answers: {"method": "grpo", "rewards": ["correct_answer", "format_tags:0.5"], "num_generations": 4} (rewards: correct_answer, format_tags, format_regex, think_format, valid_json, tool_call, length, no_repetition; their settings are the reward_* fields).

        Returns:
            JSON: "run_id", "status" ("queued" or "running"), "config" (the fields the run uses).
        """
        caller = _caller(request)
        cfg = _config(caller, config_yaml, settings)
        _zerogpu_payer(request, cfg)
        run = targets.submit(scheduler, cfg, caller)  # the gate, then the queue
        targets.await_agent(scheduler, run)  # on ZeroGPU: until the first run_progress
        values = run.config().to_dict()
        values["dataset"] = owners.shown_dataset(values["dataset"])
        return _json({"run_id": run.id, "status": run.status()["status"], "config": values})

    @user_errors
    def run_progress(run_id: str, request: gr.Request = None) -> str:
        """Where a run is: status (queued, running, completed, failed, stopped, interrupted), step of total,
        losses, ETA, tokens/s, the error if it failed, and the last log lines. Poll every 10-30 s until the
        status is no longer queued or running. On a ZeroGPU Space each call first trains the run for one GPU
        call (billed to your x-ip-token) when it is its turn; a run not polled for 5 minutes leaves the queue
        (resume_run queues it again).

        Args:
            run_id: the id start_run returned.

        Returns:
            JSON: id, status, step, total_steps, train_loss, eval_loss, eta_s, tokens_per_s, error, has_adapter (true once ask_model and push_adapter can use it), log (recent lines); a GRPO run also "rewards" (the last step's mean reward, each reward's, reply length, KL) and "samples" (the newest prompts with a reply each and its rewards).
        """
        caller = _caller(request)
        run = _run(run_id, caller.owner)
        _advance_on_zerogpu(scheduler, run, caller, request)
        st = run.status()
        last = next((e for e in reversed(run.all_events()) if "loss" in e), {})
        log = log_tail(run.log_path).splitlines()[-LOG_LINES:]
        grpo = {}
        if "reward" in last:
            grpo["rewards"] = {k: v for k, v in last.items() if k.startswith("reward") or k in ("completion_length", "kl")}
            grpo["samples"] = next((e["samples"] for e in reversed(run.all_events()) if e.get("samples")), [])
        return _json({**_summary(run), "eta_s": st.get("eta_s"), "tokens_per_s": last.get("tokens_per_s"),
                      "has_adapter": (run.adapter_dir / "adapter_config.json").exists(), "log": log, **grpo})

    @user_errors
    def list_runs(request: gr.Request = None) -> str:
        """Your runs, newest first, with status, step and losses.

        Returns:
            JSON list: id, status, step, total_steps, train_loss, eval_loss, model_name, dataset, created.
        """
        return _json([_summary(r) for r in owners.visible_runs(_caller(request).owner)])

    @user_errors
    def stop_run(run_id: str, request: gr.Request = None) -> str:
        """Stop a queued or running run. It stops after the current step and saves its adapter and a
        checkpoint, so resume_run can continue it.

        Args:
            run_id: the run to stop.

        Returns:
            JSON: id and status (a running run shows "stopping" until the step ends).
        """
        caller = _caller(request)
        run = _run(run_id, caller.owner)
        targets.stop(scheduler, run, caller)
        return _json({"id": run.id, "status": run.status()["status"]})

    @user_errors
    def resume_run(run_id: str, request: gr.Request = None) -> str:
        """Continue a stopped, failed or interrupted run from its last checkpoint (same config and data).

        Args:
            run_id: the run to resume.

        Returns:
            JSON: id and status ("queued" or "running"); follow it with run_progress (on a ZeroGPU Space it trains
            while you poll, as after start_run).
        """
        caller = _caller(request)
        run = _run(run_id, caller.owner)
        _zerogpu_payer(request, run)
        targets.resume(scheduler, run, caller)
        targets.await_agent(scheduler, run)  # on ZeroGPU: until the next run_progress
        return _json({"id": run.id, "status": run.status()["status"]})

    @user_errors
    def ask_model(run_id: str, prompt: str, system: str = "", max_new_tokens: int = SHORT_REPLY_TOKENS, temperature: float = 0.0,
                  compare_base: bool = False, request: gr.Request = None) -> str:
        """Ask a finished run's tuned model (its LoRA adapter on the base model) one question; optionally the
        base model too, to see what the training changed.

        Args:
            run_id: a run whose status is completed (or stopped with an adapter).
            prompt: the user message.
            system: optional system prompt.
            max_new_tokens: longest reply in tokens (1-4096).
            temperature: 0 answers greedily (repeatable); higher samples.
            compare_base: also answer with the adapter off.

        Returns:
            JSON: "tuned" (the reply), and "base" with compare_base.
        """
        from ftspace.chat import resolve_source

        caller = _caller(request)
        token = caller.token
        run = _run(run_id, caller.owner)
        if not (run.adapter_dir / "adapter_config.json").exists():
            raise ModelError(f"Run {run.id} has no adapter yet ({run.status()['status']}): wait until run_progress "
                             "says completed.")
        if not (prompt or "").strip():
            raise FtspaceError("prompt: give a question.")
        settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature)
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": prompt}]
        targets.admit_chat(messages, caller)
        source = resolve_source(("run", str(run.adapter_dir)), token)
        with targets.model_slot(caller):
            tuned, base = targets.chat_reply(source, messages, compare_base, settings,
                                             access.tier(signed_in=bool(token)))
        return _json({"tuned": tuned, **({"base": base} if compare_base else {})})

    @user_errors
    def push_adapter(run_id: str, repo: str, private: bool = True, merged: bool = False, gguf: str = "",
                     request: gr.Request = None) -> str:
        """Publish a finished run's LoRA adapter to the Hugging Face Hub with a model card (settings, losses,
        loss curve, usage snippet), under the account of the token you send; never the server's.

        Args:
            run_id: a run with an adapter.
            repo: "name" (under your account) or "owner/name".
            private: create the repository private (default true).
            merged: also push base + adapter merged to 16-bit, as REPO-merged (large).
            gguf: also push a GGUF export of this type (f16, bf16 or q8_0), checked against the run first, as
                REPO-GGUF (runs in llama.cpp, Ollama: `ollama run hf.co/REPO-GGUF:Q8_0`, LM Studio). Empty: none.

        Returns:
            JSON: "url" of the repository (and "gguf_url" with gguf).
        """
        from ftspace import hub

        caller = _caller(request)
        hub.require_token(caller.token)
        if not caller.can_write:
            raise ConfigError("push_adapter needs a token that may write (it creates a repo under your account): "
                              "send a write token, or a fine-grained one with repo write access.")
        run = _run(run_id, caller.owner)
        gguf = (gguf or "").strip().lower() or None
        if gguf:
            from ftspace import export

            export.check(run, gguf, caller.token)  # a wrong type: before anything is created
        url = hub.push(run, (repo or "").strip(), caller.token, private=bool(private), merged=bool(merged),
                       gguf=gguf)
        return _json({"url": url, **({"gguf_url": f"{url}-GGUF"} if gguf else {})})

    @user_errors
    def export_gguf(run_id: str, gguf_type: str = "q8_0", request: gr.Request = None) -> str:
        """Export a finished run as one GGUF file (llama.cpp, Ollama, LM Studio) with an Ollama Modelfile, and
        check it against the run: the file is read back and its greedy answers and next-token distributions
        compared with the tuned model's on the run's prompts. Fails, keeping nothing, if it does not behave
        like the run. Download it from the app's Publish tab, or push it with push_adapter(gguf=...).

        Args:
            run_id: a run with an adapter.
            gguf_type: f16, bf16 or q8_0 (k-quants where the server has llama.cpp's quantizer).

        Returns:
            JSON: "file", "bytes", "parity" (per reader: same greedy answers, KL divergence, perplexity ratio),
            "modelfile" (its text).
        """
        caller = _caller(request)
        run = _run(run_id, caller.owner)
        report = targets.export_gguf(run, (gguf_type or "").strip().lower(), caller)
        modelfile = Path(report["folder"]) / "Modelfile"
        return _json({k: report[k] for k in ("file", "bytes", "type", "architecture", "parity")}
                     | {"ollama": report.get("ollama")}
                     | {"modelfile": modelfile.read_text(encoding="utf-8") if modelfile.exists() else ""})

    tools = [inspect_dataset, estimate_run, start_run, run_progress, list_runs, stop_run, resume_run, ask_model,
             export_gguf, push_adapter]
    reads = {run_progress, list_runs, stop_run}  # files only: never wait behind a slow call
    for tool in tools:
        gr.api(tool, api_name=tool.__name__, concurrency_id="export" if tool is export_gguf else
               "agent-" + tool.__name__, concurrency_limit=None if tool in reads else 1 if tool is export_gguf else 2)
    return [tool.__name__ for tool in tools]
