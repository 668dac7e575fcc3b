"""Training on Hugging Face Jobs, against the fake Hub's Jobs API (tests/fakehub.py: FakeJobs), which runs the
submitted command as a local subprocess: the real job entry point downloads the run from the fake Hub, trains
the tiny model with the real worker and pushes checkpoints and the adapter back."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from clitools import cli_process
from fakehub import FakeHub
from test_engine import wait_until

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "hf_user_token_jobs_1234"


def cli(*args, env):
    """A real process: the fake Hub's endpoint (HF_ENDPOINT) is read when huggingface_hub is imported."""
    return cli_process(*args, env=env)


def hub_env(fake, runs_dir, token=TOKEN):
    return {"HF_ENDPOINT": fake.url, "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0", "FTSPACE_RUNS": str(runs_dir),
            "HF_TOKEN": token}


def write_config(tmp_path, tiny_model, **extra) -> Path:
    cfg = {"model_name": str(tiny_model), "dataset": "example:facts", "max_steps": 4, "save_steps": 2,
           "max_seq_length": 64, "gradient_checkpointing": False, "backend": "hf", "per_device_train_batch_size": 2,
           "gradient_accumulation_steps": 1, **extra}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def the_run(runs_dir):
    from ftspace.runs import Run

    (path,) = [p for p in runs_dir.iterdir() if (p / "config.yaml").exists()]
    return Run(path)


def test_a_line_of_the_worker_written_in_two_parts_never_splits_an_event_line_of_the_job(capsys):
    """An unbuffered print writes its text, then the newline: an event the job prints between the two still gets a
    line of its own in the job's log (before, it landed mid-line, and the app lost that step's event under load)."""
    import os
    import threading

    from ftspace.engine import job

    read, write = os.pipe()
    relaying = threading.Thread(target=job.relay, args=(os.fdopen(read, "rb"),))
    relaying.start()
    os.write(write, b"[ftspace] step 1/4 loss 1.0")
    job.emit(job.EVENT + '{"step": 1, "loss": 1.0}')
    os.write(write, b", ETA 3s\n")
    os.close(write)
    relaying.join(timeout=10)
    assert capsys.readouterr().out.splitlines() == [job.EVENT + '{"step": 1, "loss": 1.0}',
                                                    "[ftspace] step 1/4 loss 1.0, ETA 3s"]


def test_cli_trains_on_jobs_and_pulls_the_adapter_back(tmp_path, tiny_model, runs_dir):
    with FakeHub(token=TOKEN, user="alice") as fake:
        config = write_config(tmp_path, tiny_model)
        result = cli("train", "--config", str(config), "--on", "hf-jobs", "--flavor", "a10g-large", "--quiet",
                     env=hub_env(fake, runs_dir))
        assert result.returncode == 0, result.stderr[-3000:]
        run = the_run(runs_dir)
        st = run.read_status()
        assert st["status"] == "completed" and st["step"] == 4 and st["total_steps"] == 4, st
        job = fake.jobs.jobs[st["job"]["id"]]
        # the job: the user's token as its only secret, the flavor asked for, the run's labels
        assert job["spec"]["secrets"] == {"HF_TOKEN": TOKEN} and job["spec"]["flavor"] == "a10g-large"
        assert st["job"]["labels"]["ftspace-run"] and job["spec"]["labels"] == st["job"]["labels"]
        assert job["spec"]["dockerImage"].startswith("ghcr.io/astral-sh/uv") and "--with" in job["spec"]["command"]
        pins = [job["spec"]["command"][i + 1] for i, a in enumerate(job["spec"]["command"]) if a == "--with"]
        assert "unsloth==2026.10.9" in pins and any(p.startswith("torch==") for p in pins)  # requirements.txt's pins
        assert not any(p.startswith(("gradio", "spaces", "mcp")) for p in pins)  # the app's own stay out
        # ... ran the code pushed with the run, and pushed as the user to the user's private repo
        repo = fake.repos[st["job"]["repo"]]
        assert st["job"]["repo"].startswith("alice/ftspace-") and repo["private"]
        assert any(f"{st['job']['repo']}" in line and "ftspace code from" in line and "/code/ftspace" in line
                   for line in job["lines"]), job["lines"][:5]
        assert {"adapter/adapter_config.json", "run/config.yaml", "code/ftspace/engine/job.py"} <= set(repo["files"])
        assert any(name.startswith("checkpoints/checkpoint-4/") for name in repo["files"])
        # the adapter is back where chat, evaluation and publish look for it; events and log came along
        assert (run.adapter_dir / "adapter_config.json").exists()
        events = [json.loads(line) for line in run.events_path.read_text().splitlines()]
        assert [e["step"] for e in events if "loss" in e] == [1, 2, 3, 4]
        log = run.log_path.read_text()
        assert "submitted job" in log and "adapter pulled" in log and "[ftspace event]" not in log
        assert TOKEN not in log and TOKEN not in run.path.joinpath("status.json").read_text()
        assert (run.adapter_dir / "adapter_model.safetensors").read_bytes() == \
            repo["files"]["adapter/adapter_model.safetensors"]
        # chat answers with it (the random-weight model's reply is noise: that it loads and generates is the point)
        reply = cli("chat", run.id, "--prompt", "What is the capital of Zorblax?", "--max-new-tokens", "5",
                    env=hub_env(fake, runs_dir))
        assert reply.returncode == 0 and not reply.stderr.strip(), reply.stderr[-2000:]
        status = cli("status", run.id, env=hub_env(fake, runs_dir))
        job = run.read_status()["job"]
        assert job["url"] == f"{fake.url.rstrip('/')}/jobs/alice/{job['id']}", job  # the Hub's page of the job
        assert f"on Hugging Face Jobs: a10g-large, job {job['url']} (COMPLETED), repo {job['repo']}" in status.stdout, \
            status.stdout
        listing = cli("runs", env=hub_env(fake, runs_dir))
        assert run.id in listing.stdout and "completed" in listing.stdout and "[Jobs a10g-large]" in listing.stdout


def test_a_grpo_run_trains_on_jobs_by_its_rewards(tmp_path, tiny_model, runs_dir):
    """GRPO on Hugging Face Jobs: the job trains by reward with the real worker (TRL's GRPOTrainer), and each
    reward's curve and the sampled replies with their rewards come back with the events, as for a local run."""
    with FakeHub(token=TOKEN, user="alice") as fake:
        config = write_config(tmp_path, tiny_model, dataset="example:arithmetic", method="grpo",
                              rewards=["correct_answer", "length:0.5"], num_generations=2, max_completion_length=8,
                              max_steps=2, save_steps=2)
        result = cli("train", "--config", str(config), "--on", "hf-jobs", "--quiet", env=hub_env(fake, runs_dir))
        assert result.returncode == 0, result.stderr[-3000:]
        run = the_run(runs_dir)
        st = run.read_status()
        assert st["status"] == "completed" and st["step"] == 2 and st["trainer_class"].endswith("GRPOTrainer"), st
        events = [json.loads(line) for line in run.events_path.read_text().splitlines()]
        steps = [e for e in events if "loss" in e]
        assert [e["step"] for e in steps] == [1, 2]
        assert all("reward_correct_answer" in e and "reward_length" in e and "completion_length" in e for e in steps)
        [sampled] = [e for e in events if e.get("samples")]  # at the first step, with each reply's rewards
        assert sampled["step"] == 1 and set(sampled["samples"][0]["rewards"]) == {"correct_answer", "length"}
        assert (run.adapter_dir / "adapter_config.json").exists()


def paused(fake) -> bool:
    return any(job.get("paused") for job in fake.jobs.jobs.values())


def test_stop_cancels_the_job_and_resume_continues_on_a_new_one(tmp_path, tiny_model, runs_dir):
    with FakeHub(token=TOKEN, user="alice") as fake:
        fake.jobs.pause_at = "pushed checkpoint-"  # the job holds still mid-run, a checkpoint on the Hub
        config = write_config(tmp_path, tiny_model, max_steps=30)
        env = hub_env(fake, runs_dir)
        train = subprocess.Popen([sys.executable, "-m", "ftspace", "train", "--config", str(config), "--on", "hf-jobs",
                                  "--flavor", "t4-small", "--quiet"], cwd=ROOT, env={**os.environ, **env},
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        try:
            wait_until(lambda: paused(fake), timeout=300, what="the job to push a checkpoint")
            run = the_run(runs_dir)
            stop = cli("stop", run.id, env=env)
            assert stop.returncode == 0 and "cancelled the job" in stop.stderr, stop.stderr
            out, errs = train.communicate(timeout=120)
        finally:
            train.kill()
        assert train.returncode == 1, errs[-2000:]
        st = run.read_status()
        first = st["job"]["id"]
        assert fake.jobs.jobs[first]["status"]["stage"] == "CANCELED"
        assert st["status"] == "stopped" and "cancelled at step" in st["error"] and 2 <= st["step"] < 30, st
        pushed = [line for line in fake.jobs.jobs[first]["lines"] if "pushed checkpoint-" in line][-1]
        kept = pushed.split("pushed ")[1].split(" ")[0]
        assert f"run {run.id} stopped: stopped: the job was cancelled" in errs
        assert not (run.adapter_dir / "adapter_config.json").exists()
        listing = json.loads(cli("runs", "--json", env=env).stdout)
        assert [(r["id"], r["status"], r["jobs_flavor"]) for r in listing] == [(run.id, "stopped", "t4-small")]

        resumed = cli("resume", run.id, "--quiet", env=env)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        st = run.read_status()
        assert st["status"] == "completed" and st["step"] == 30 and st["jobs_history"][0] == first, st
        second = fake.jobs.jobs[st["job"]["id"]]
        assert "--resume" in second["spec"]["command"] and st["job"]["id"] != first
        assert any(f"resuming from {kept}" in line for line in second["lines"]), second["lines"][-20:]
        assert not any(f"pushed {kept} " in line for line in second["lines"])  # it was on the Hub already
        steps = [e["step"] for e in map(json.loads, run.events_path.read_text().splitlines()) if "loss" in e]
        resumed_at = int(kept.split("-")[1])
        # the first job's events, then the second one's from its checkpoint on
        assert steps[:resumed_at] == list(range(1, resumed_at + 1))
        assert steps[-(30 - resumed_at):] == list(range(resumed_at + 1, 31))
        assert (run.adapter_dir / "adapter_config.json").exists()


def test_a_job_killed_out_of_memory_fails_the_run_with_that_reason(tmp_path, tiny_model, runs_dir):
    with FakeHub(token=TOKEN, user="alice") as fake:
        fake.jobs.fail_with = ("Out of memory: the container was killed (OOMKilled, exit code 137)", "[ftspace event]")
        result = cli("train", "--config", str(write_config(tmp_path, tiny_model)), "--on", "hf-jobs", "--flavor",
                     "t4-small", "--quiet", env=hub_env(fake, runs_dir))
        assert result.returncode == 1
        st = the_run(runs_dir).read_status()
        assert st["status"] == "failed" and st["error"].startswith("out of memory on t4-small (Out of memory: the "
                                                                   "container was killed"), st
        assert "pick a flavor with more memory" in st["error"] and "\n" not in st["error"]
        assert f"failed: {st['error']}" in result.stderr


def test_a_refused_token_is_one_line_and_no_job_starts(tmp_path, tiny_model, runs_dir):
    with FakeHub(token=TOKEN, user="alice") as fake:
        result = cli("train", "--config", str(write_config(tmp_path, tiny_model)), "--on", "hf-jobs", "--quiet",
                     env=hub_env(fake, runs_dir, token="hf_not_a_valid_token"))
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("error: The Hub refused the token while submitting the job "
                                                                 "(401)"), result.stderr
        assert "hf_not_a_valid_token" not in result.stderr and not fake.jobs.jobs
        assert the_run(runs_dir).read_status()["status"] == "failed"


def test_a_space_visitor_trains_on_jobs_with_their_own_token(tmp_path, tiny_model):
    """On a Space: the signed-in visitor's run goes to Jobs under their OAuth token (never the server's HF_TOKEN),
    the Train tab shows the cost and who pays, follows the job to completed, and chat answers with the adapter."""
    from apptools import App, progress
    from test_app import run_values, value_of
    from test_oauth import SPACE_ENV, client_for, sign_in

    server_token = "hf_server_secret_token_999"
    with FakeHub(token=server_token, user="spaceowner") as fake, \
            App(tmp_path, HF_ENDPOINT=fake.url, OPENID_PROVIDER_URL=fake.url, HF_TOKEN=server_token,
                **{**SPACE_ENV, "OAUTH_SCOPES": "openid profile write-repos manage-repos jobs"}) as app:
        bob = client_for(app, sign_in(app.url, fake, "bob"))
        browser = "bobs-browser"
        values = run_values(model_name=str(tiny_model), dataset="example:facts", max_steps=4, save_steps=2,
                            max_seq_length=64, backend="hf", train_on="hf_jobs", jobs_flavor="a10g-large",
                            jobs_timeout_minutes=30)
        estimate = bob.predict(browser, *values, api_name="/estimate")
        assert "on Hugging Face Jobs, Nvidia A10G - large at $1.50/hour" in estimate, estimate
        assert "billed per minute to **your own** Hugging Face account" in estimate
        run_id = value_of(bob.predict(browser, *values, api_name="/start")[0])
        deadline, status = time.time() + 300, ""
        while time.time() < deadline and "**completed**" not in status and "**failed**" not in status:
            status = progress(bob, run_id, browser)
            time.sleep(0.5)
        assert "**completed**" in status and "step 4/4" in status, status + app.log.read_text()[-3000:]
        assert "on Hugging Face Jobs (a10g-large, billed to bob)" in status
        [job] = fake.jobs.jobs.values()
        bob_token = fake.oauth_tokens[-1]
        assert fake.tokens[bob_token] == "bob" and job["spec"]["secrets"] == {"HF_TOKEN": bob_token}
        assert job["spec"]["spaceId"] == "tester/ftspace" and job["spec"]["command"][:3] == ["python", "-m",
                                                                                              "ftspace.engine.job"]
        assert job["owner"]["name"] == "bob" and "bob/ftspace-" + run_id in fake.repos
        # every Hub call the job and the app made for bob carried bob's token; the server's was never sent
        sent = [{k.lower(): v for k, v in h.items()}.get("authorization") for _, _, h in fake.requests]
        assert f"Bearer {server_token}" not in sent and f"Bearer {bob_token}" in sent
        tuned, _, _ = bob.predict(browser, "a run of mine", run_id, "default", "", "", 4, 0.0, 0.95, False, "hi", [],
                                  [], "its base model", api_name="/chat")
        assert tuned[-1]["role"] == "assistant"
        leaks = [str(p) for p in tmp_path.rglob("*") if p.is_file() and bob_token.encode() in p.read_bytes()]
        assert leaks == []


def test_a_restarted_app_follows_the_job_again(tmp_path, tiny_model, runs_dir):
    """The CLI that submitted the job dies mid-run; the job goes on; the app, started afterwards, finds the run's
    job in its status, follows it to completed (the log read on from where the CLI stopped) and pulls the adapter."""
    from gradio_client import Client

    from apptools import App, progress

    with FakeHub(token=TOKEN, user="alice") as fake:
        fake.jobs.pause_at = "pushed checkpoint-"
        env = hub_env(fake, runs_dir)
        train = subprocess.Popen([sys.executable, "-m", "ftspace", "train", "--config",
                                  str(write_config(tmp_path, tiny_model, max_steps=30)), "--on", "hf-jobs", "--quiet"],
                                 cwd=ROOT, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: paused(fake), timeout=300, what="the job to push a checkpoint")
            run = the_run(runs_dir)
            wait_until(lambda: run.read_status().get("status") == "running", what="the CLI to see the job run")
        finally:
            train.kill()
            train.wait()
        before = run.log_path.read_text()
        [job] = fake.jobs.jobs.values()
        fake.jobs.unpause(job)
        wait_until(lambda: job["status"]["stage"] == "COMPLETED", timeout=300, what="the job to finish")
        assert run.read_status()["status"] == "running"  # nobody followed it meanwhile
        (tmp_path / "app").mkdir()
        with App(tmp_path / "app", **{**env, "FTSPACE_RUNS": str(runs_dir)}) as app:
            client = Client(app.url, verbose=False)
            wait_until(lambda: "**completed**" in progress(client, run.id), timeout=120,
                       what="the app to follow the job")
            status = progress(client, run.id)
        assert "step 30/30" in status and "on Hugging Face Jobs" in status, status
        assert (run.adapter_dir / "adapter_config.json").exists()
        log = run.log_path.read_text()
        assert log.startswith(before) and "[ftspace] step 30/30" not in before
        for step in range(1, 31):  # every line once: read on from where the CLI stopped, nothing taken twice
            assert sum(f"[ftspace] step {step}/30 " in line for line in log.splitlines()) == 1, log[-3000:]
        steps = [e["step"] for e in map(json.loads, run.events_path.read_text().splitlines()) if "loss" in e]
        assert steps == list(range(1, 31))


def test_estimate_on_jobs_says_time_cost_and_who_pays(tmp_path, tiny_model, runs_dir):
    with FakeHub(token=TOKEN, user="alice") as fake:
        result = cli("estimate", "--config", str(write_config(tmp_path, tiny_model)), "--on", "hf-jobs", "--flavor",
                     "t4-small", env=hub_env(fake, runs_dir))
        assert result.returncode == 0, result.stderr[-2000:]
        out = json.loads(result.stdout)
        assert out["hf_jobs"]["flavor"] == "t4-small" and out["hf_jobs"]["usd_per_hour"] == 0.4
        assert out["hf_jobs"]["usd"] == round(out["hf_jobs"]["seconds"] / 3600 * 0.4, 2) > 0
        assert "on Hugging Face Jobs, Nvidia T4 - small at $0.40/hour" in result.stderr
        assert "billed per minute to your own Hugging Face account" in result.stderr
        wrong = cli("estimate", "--config", str(write_config(tmp_path, tiny_model)), "--on", "hf-jobs", "--flavor",
                    "z9-huge", env=hub_env(fake, runs_dir))
        assert wrong.returncode == 2 and "jobs_flavor 'z9-huge' is not offered by Hugging Face Jobs: choose one of " \
            "cpu-basic, t4-small" in wrong.stderr


def test_a_job_past_its_time_limit_fails_the_run_saying_so(tmp_path, tiny_model, runs_dir):
    with FakeHub(token=TOKEN, user="alice") as fake:
        fake.jobs.pause_at = "pushed checkpoint-"
        train = subprocess.Popen([sys.executable, "-m", "ftspace", "train", "--config",
                                  str(write_config(tmp_path, tiny_model, max_steps=30, jobs_timeout_minutes=5)), "--on",
                                  "hf-jobs", "--quiet"], cwd=ROOT, env={**os.environ, **hub_env(fake, runs_dir)},
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: paused(fake), timeout=300, what="the job to push a checkpoint")
            [job] = fake.jobs.jobs.values()
            assert job["spec"]["timeoutSeconds"] == 300
            fake.jobs.end(job, "ERROR", "Job timeout")  # as the Hub ends a job at its time limit
            _, errs = train.communicate(timeout=120)
        finally:
            train.kill()
        assert train.returncode == 1
        st = the_run(runs_dir).read_status()
        assert st["status"] == "failed" and st["error"] == (
            f"the job reached its time limit (5 min) at step {st['step']}: Resume continues on a new job from the last "
            "checkpoint it pushed, or raise jobs_timeout_minutes"), st
        assert st["error"] in errs
