"""The app on ZeroGPU when every call gets a fresh worker (the service may move a task to another GPU at any call):
each call forks anew, imports the training stack and loads the model again, and the fake device API kills a call
that overruns its duration by more than 3 s. tests/test_space.py runs the same wrapper with reused workers."""

import pytest

from apptools import ROOT, App
from fakehub import FakeHub
from fakezerogpu import FakeZeroGPU
from test_app import run_values, value_of
from test_oauth import SPACE_ENV
from test_space import client, ip_token

CALL_CAP_S = 30  # above a fresh fork's fixed cost on a 2-core CPU (imports ~7 s, load, restore), below the run,
# and room for the evaluation's call (~9 s here in a fresh fork; it stops 5 s before its call ends)


@pytest.fixture(scope="module")
def fresh_space(tmp_path_factory, tiny_model):
    tmp = tmp_path_factory.mktemp("zerogpu-fresh")
    with FakeHub(token="hf_owner_secret_fresh_0123456789", user="owner") as hub, \
            FakeZeroGPU(fresh_workers=True, grace_s=3.0) as gpu:
        env = dict(SPACE_ENV, HF_ENDPOINT=hub.url, OPENID_PROVIDER_URL=hub.url, SPACES_ZERO_GPU="true",
                   SPACES_ZERO_DEVICE_API_URL=gpu.url, PYTHONPATH=f"{ROOT / 'tests' / 'zerogpu_shim'}:{ROOT}",
                   FTSPACE_ZEROGPU_MAX_CALL_S=str(CALL_CAP_S), FTSPACE_SAVE_MARGIN_S="2",
                   FTSPACE_ZEROGPU_RETRY_S="0.2,0.2,0.2")
        with App(tmp, **env) as app:
            yield app, gpu, tmp


def test_with_a_fresh_worker_per_call_every_call_advances_and_none_overruns(fresh_space, tiny_model):
    from ftspace import runs

    app, gpu, tmp = fresh_space
    dave_ip = ip_token("dave")
    dave = client(app, dave_ip)
    # Steps of ~0.3 s here (48 micro-batches each): after a fresh fork's fixed cost (~7 s) and the save margin, a 30 s
    # call trains about 70, so the 100 steps need two calls or more.
    run_id = value_of(dave.predict("d", *run_values(model_name=str(tiny_model), dataset="example:alpaca", max_steps=100,
                                                    max_seq_length=128, per_device_train_batch_size=2,
                                                    gradient_accumulation_steps=48, save_steps=1000, backend="auto"),
                                   api_name="/start")[0])
    n_grants = len(gpu.grants_log)
    job = dave.submit("d", run_id, api_name="/train_on_gpu")
    list(job)
    assert job.status().success, job.exception()
    run = runs.Run(tmp / "runs" / run_id)
    st = run.status()
    assert st["status"] == "completed" and st["step"] == 100, (st, run.log_path.read_text()[-2000:])
    grants = gpu.grants_log[n_grants:]
    slices = [e for e in run.events()[0] if e.get("slice")]
    assert len(slices) >= 2 and len(grants) == len(slices), (len(slices), len(grants))
    # Every call was a fresh fork (its own process), advanced the run, and ended within its duration.
    assert all(g.fresh for g in grants) and len({g.pid for g in grants}) == len(grants)
    assert gpu.aborted == []
    ends = [e["step"] for e in slices]
    assert ends[0] > 0 and all(b > a for a, b in zip(ends, ends[1:])), ends
    assert all(g.duration <= CALL_CAP_S and g.token == dave_ip for g in grants)
    assert [e["step"] for e in run.events()[0] if "loss" in e] == list(range(1, 101))  # each step once
    # The calls were sized by the fixed cost a fresh fork measured, not the cheaper restarts of a reused worker.
    assert min(e["load_s"] for e in slices) > 1.0

    # A chat message in a fresh fork of its own: the base and the adapter load there, within the call.
    n_grants = len(gpu.grants_log)
    tuned, _, _ = dave.predict("d", "a run of mine", run_id, "default", "", "", 8, 0.0, 0.95, False, "hi", [], [],
                               "its base model", api_name="/chat")
    assert tuned[-1]["role"] == "assistant" and tuned[-1]["content"]
    assert len(gpu.grants_log) == n_grants + 1 and gpu.grants_log[-1].fresh and gpu.aborted == []

    # Evaluate: one GPU call (the whole scorecard, its progress streamed out of the fork), billed to dave.
    from ftspace.ui.eval_tab import FINAL

    n_grants = len(gpu.grants_log)
    summary, table, examples, probe, _ = dave.predict("d", run_id, FINAL, "example:alpaca", 2, 8, "its base model",
                                                      api_name="/evaluate")
    assert "Task gain" in summary and "Scored on 2 test prompts" in summary and len(probe["data"]) == 48
    assert len(gpu.grants_log) == n_grants + 1 and gpu.grants_log[-1].token == dave_ip and gpu.aborted == []
    assert (run.path / "evaluations" / "final.json").exists()
    assert app.alive()
