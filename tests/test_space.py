"""The app as a public ZeroGPU Space, with the real `spaces` wrapper: whose token acts, and whose GPU quota
pays.

The app runs as on a Space (SYSTEM=spaces, SPACE_ID, OAUTH_*; sign-in is Gradio's real OAuth flow against
the fake Hub) with the Space owner's HF_TOKEN secret set on the server, and with SPACES_ZERO_GPU=true
pointed at a fake ZeroGPU device API (tests/fakezerogpu.py). `spaces` insists on a CUDA build of torch in
one submodule only (spaces.zero.torch, which patches CUDA); tests/zerogpu_shim/sitecustomize.py stands in
for that submodule with the no-ops `spaces` uses when torch is absent. Everything else is the real
wrapper: it forks, pickles arguments and results, reads the visitor's x-ip-token from the Gradio request,
and calls /schedule, /allow and /release.
"""

import base64
import json

import pytest

from apptools import ROOT, App, progress
from fakehub import FakeHub
from fakezerogpu import FakeZeroGPU
from test_app import run_values, value_of
from test_oauth import SPACE_ENV, sign_in

OWNER, OWNER_TOKEN = "owner", "hf_space_owner_secret_0123456789"
CALL_CAP_S = 6  # FTSPACE_ZEROGPU_MAX_CALL_S: calls far shorter than the run (160 steps), so it needs several


def ip_token(visitor: str, **claims) -> str:
    """What Hugging Face's proxy puts in x-ip-token: a JWT (only its payload is read by `spaces`); `claims` make
    another token of the same visitor (a page's fresh one)."""
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")  # noqa: E731
    return f"{enc({'alg': 'none'})}.{enc({'sub': visitor, **claims})}.signature"


def client(app, ip: str, cookie: str | None = None):
    from gradio_client import Client

    headers = {"x-ip-token": ip, **({"Cookie": f"session={cookie}"} if cookie else {})}
    return Client(app.url, verbose=False, headers=headers)


@pytest.fixture(scope="module")
def space(tmp_path_factory, tiny_model):
    tmp = tmp_path_factory.mktemp("zerogpu-space")
    with FakeHub(token=OWNER_TOKEN, user=OWNER) as hub, FakeZeroGPU() as gpu:
        # The Space owner's private things, which no visitor may reach through the Space's secret.
        hub.repos[f"datasets/{OWNER}/private-data"] = {"private": True, "sha": "c" * 40, "files": {
            "data/train.jsonl": b'{"question": "Secret?", "answer": "Owner only."}\n'}}
        hub.repos[f"{OWNER}/private-model"] = {"private": True, "sha": "d" * 40, "files": {
            p.name: p.read_bytes() for p in tiny_model.iterdir() if p.is_file()}}
        hub.repos[f"{OWNER}/existing"] = {"private": False, "sha": "e" * 40, "files": {"README.md": b"# mine\n"}}
        env = dict(SPACE_ENV, HF_ENDPOINT=hub.url, OPENID_PROVIDER_URL=hub.url, HF_TOKEN=OWNER_TOKEN, HF_DATASETS_OFFLINE="0",
                   SPACES_ZERO_GPU="true", SPACES_ZERO_DEVICE_API_URL=gpu.url,
                   PYTHONPATH=f"{ROOT / 'tests' / 'zerogpu_shim'}:{ROOT}", FTSPACE_ZEROGPU_MAX_CALL_S=str(CALL_CAP_S),
                   FTSPACE_SAVE_MARGIN_S="2", FTSPACE_ZEROGPU_RETRY_S="0.2,0.2,0.2")
        with App(tmp, **env) as app:
            yield app, hub, gpu, tmp


def refused(call, match):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=match):
        call()


def test_a_visitor_acts_with_their_own_token_never_the_spaces(space, tiny_model, tmp_path):
    app, hub, gpu, tmp = space
    anon = client(app, ip_token("anon"))
    before = dict(hub.repos[f"{OWNER}/existing"]["files"])
    n_requests = len(hub.requests)

    # Signed out: pushing asks to sign in and creates nothing; the owner's private data, model and
    # adapters are refused exactly as the Hub refuses an anonymous request.
    refused(lambda: anon.predict("b", "any-run", "existing", False, False, "", "q8_0", False, api_name="/push"),
            "Sign in with Hugging Face .* Nothing was created")
    refused(lambda: anon.predict("", f"{OWNER}/private-data", "auto", "", "", "default", 256, api_name="/check"),
            "not found on the Hub \\(or private\\): sign in")
    refused(lambda: anon.predict("", *run_values(model_name=f"{OWNER}/private-model", dataset="example:facts"),
                                 api_name="/start"), "private-model: not found on the Hub")
    refused(lambda: anon.predict("", *run_values(dataset=f"{OWNER}/private-data"), api_name="/start"),
            "private-data: not found on the Hub")
    refused(lambda: anon.predict("", "an adapter on the Hub", None, "default", f"{OWNER}/private-model", "", 4, 0.0,
                                 0.95, False, "hi", [], [], "its base model", api_name="/chat"), "not found on the Hub")

    # A second account gets the same answer: its own token, not the owner's.
    bob = client(app, ip_token("bob"), sign_in(app.url, hub, "bob"))
    refused(lambda: bob.predict("", f"{OWNER}/private-data", "auto", "", "", "default", 256, api_name="/check"),
            "not found on the Hub \\(or private\\): check the id")
    refused(lambda: bob.predict("", *run_values(model_name=f"{OWNER}/private-model", dataset="example:facts"),
                                api_name="/start"), "private-model: not found on the Hub")
    refused(lambda: bob.predict("", "a base model", None, f"{OWNER}/private-model", "", "", 4, 0.0, 0.95, False,
                                "hi", [], [], "its base model",
                                api_name="/chat"), "private-model: not found on the Hub")

    # The owner, signed in, reads it: their OAuth token reaches the Hub (so the others' refusals were real).
    owner = client(app, ip_token("owner"), sign_in(app.url, hub, OWNER))
    summary = owner.predict("", f"{OWNER}/private-data", "auto", "", "", "default", 256, api_name="/check")[0]
    assert "1 kept" in summary
    tuned, _, _ = owner.predict("", "a base model", None, f"{OWNER}/private-model", "", "", 4, 0.0, 0.95, False, "hi",
                                [], [], "its base model",
                                api_name="/chat")  # downloaded with the owner's token, on ZeroGPU
    assert tuned[-1]["role"] == "assistant"

    # No request from the app ever carried the server's token; nothing of the owner's repo changed.
    seen = [{k.lower(): v for k, v in headers.items()} for _, _, headers in hub.requests]
    assert len(seen) > n_requests and not any(OWNER_TOKEN in h.get("authorization", "") for h in seen)
    assert not [path for method, path, _ in hub.requests if method == "POST" and "/api/repos/create" in path]
    assert hub.repos[f"{OWNER}/existing"]["files"] == before
    assert app.alive()


def test_a_run_trains_in_gpu_calls_billed_to_its_visitor(space, tiny_model, tmp_path):
    """Alice (free account) uploads data, trains on ZeroGPU from her own event, chats, and pushes."""
    from gradio_client import handle_file

    from ftspace import runs
    from ftspace.targets import zerogpu
    from ftspace.targets import local
    from ftspace.config import RunConfig

    app, hub, gpu, tmp = space
    alice_ip = ip_token("alice")
    alice = client(app, alice_ip, sign_in(app.url, hub, "alice"))
    data = tmp_path / "zorblax_qa.jsonl"
    data.write_text((ROOT / "examples" / "facts.jsonl").read_text())
    upload = alice.predict(handle_file(str(data)), "", api_name="/upload")
    assert "kept" in alice.predict("", upload, "auto", "", "", str(tiny_model), 64, api_name="/check")[0]

    settings = dict(model_name=str(tiny_model), dataset=upload, max_steps=160, max_seq_length=64, save_steps=1000,
                    per_device_train_batch_size=2, learning_rate=1e-3, backend="auto")
    run_id = value_of(alice.predict("", *run_values(**settings), api_name="/start")[0])
    n_schedules = len(gpu.schedules)
    job = alice.submit("", run_id, api_name="/train_on_gpu")
    shown = [out[0] for out in job]
    assert job.status().success, job.exception()
    assert "**completed**" in shown[-1] and any("GPU call" in line for line in shown)

    run = runs.Run(tmp / "runs" / run_id)
    st = run.read_status()
    assert st["status"] == "completed" and st["step"] == 160
    # The fork trained through Unsloth: its SFTTrainer is Unsloth's (its CPU fallback's, here).
    assert st["backend"] == "unsloth" and ("Unsloth" in st["trainer_class"] or "_make_cpu_sft_trainer" in
                                           st["trainer_class"]), st["trainer_class"]
    assert st["tier"] == "free" and any("free tier" in line for line in shown)  # signed in, not PRO
    calls = gpu.schedules[n_schedules:]
    slices = [e for e in run.events()[0] if e.get("slice")]
    assert len(slices) >= 2 and len(calls) == len(slices), (len(slices), calls)
    assert all(c.get("token") == alice_ip for c in calls), calls  # every call billed to alice's quota
    cap = min(CALL_CAP_S, zerogpu.TIERS["free"].max_call_s)
    assert all(int(c["durationSeconds"]) <= cap for c in calls), calls
    assert len(gpu.releases) >= len(calls)

    # The same run unsliced, same seed, in one worker: same steps and the same adapter weights.
    same = run.config().to_dict()
    plain, _ = local.start(RunConfig.from_dict({**same, "dataset": str(data)}))
    assert plain.wait(timeout=300)["status"] == "completed", plain.log_path.read_text()[-2000:]
    assert [e["step"] for e in run.events()[0] if "loss" in e] == list(range(1, 161))
    assert_same_weights(run.adapter_dir, plain.adapter_dir)

    # Chat: one GPU call per message streams the tuned and the base reply, billed to alice.
    n_schedules = len(gpu.schedules)
    tuned, base, _ = alice.predict("", "a run of mine", run_id, "default", "", "", 8, 0.0, 0.95, True, "hi", [], [],
                                   "its base model", api_name="/chat")
    assert tuned[-1]["role"] == "assistant" and tuned[-1]["content"]
    assert base[-1]["role"] == "assistant" and base[-1]["content"]
    chat_calls = gpu.schedules[n_schedules:]
    assert len(chat_calls) == 1 and chat_calls[0]["token"] == alice_ip
    assert int(chat_calls[0]["durationSeconds"]) <= cap

    # Evaluate: one GPU call, billed to alice; in a 6 s call the scorecard does not fit, and the evaluation stops in
    # time to say so in one line (ZeroGPU would end the call with nothing said). The scorecard through a call long
    # enough: tests/test_zerogpu_fresh.py.
    from gradio_client.exceptions import AppError

    from ftspace.ui.eval_tab import FINAL

    n_schedules = len(gpu.schedules)
    with pytest.raises(AppError, match=r"The evaluation did not fit one ZeroGPU call of your tier \(6 s\): lower"):
        alice.predict("", run_id, FINAL, "example:alpaca", 2, 8, "its base model", api_name="/evaluate")
    eval_calls = gpu.schedules[n_schedules:]
    assert len(eval_calls) == 1 and eval_calls[0]["token"] == alice_ip
    assert not (run.path / "evaluations" / "final.json").exists() and not gpu.aborted

    # What she sees names her file, never where the server keeps it: runs list, status, log tail.
    assert upload == "zorblax_qa.jsonl (uploaded)"
    listed = str(alice.predict("", api_name="/runs"))
    shown_status, _, log_tail = alice.predict("", run_id, api_name="/progress")[:3]
    assert "zorblax_qa.jsonl (uploaded)" in listed and "adapter saved" in log_tail
    assert not any(str(tmp) in text for text in (listed, shown_status, log_tail))

    # Her push lands in her namespace; the card names the file she uploaded, never a server path. With it, a GGUF
    # export, made and checked on the CPU in a helper process (the app process never imports transformers on
    # ZeroGPU), without a GPU call.
    n_requests, n_grants = len(hub.requests), len(gpu.grants_log)
    result = alice.predict("", run_id, "zorblax-zero", True, False, "", "q8_0", True, api_name="/push")
    assert "alice/zorblax-zero" in str(result) and "alice/zorblax-zero-GGUF" in str(result)
    assert "zorblax-zero-GGUF-Q8_0.gguf" in hub.repos["alice/zorblax-zero-GGUF"]["files"]
    assert len(gpu.grants_log) == n_grants
    alice_tokens = {f"Bearer {t}" for t, user in hub.tokens.items() if user == "alice"}
    sent = [(m, p, {k.lower(): v for k, v in h.items()}.get("authorization")) for m, p, h in hub.requests[n_requests:]]
    # Every request of her push that carries a token carries hers (huggingface_hub also makes an anonymous
    # lookup of its own, /api/agent-harnesses, with none), and the writes all do.
    assert all(auth in alice_tokens for _, _, auth in sent if auth), sent
    writes = [auth for method, path, auth in sent if method == "POST" and "/api/" in path]
    assert writes and all(auth in alice_tokens for auth in writes), sent
    card = hub.repos["alice/zorblax-zero"]["files"]["README.md"].decode()
    assert "zorblax_qa.jsonl" in card and str(tmp) not in card and "uploads/" not in card


def assert_same_weights(a, b, tolerance=1e-5):
    """Adapter tensors equal within float noise (bf16 compute on CPU): relative L2 difference per tensor."""
    from safetensors.torch import load_file

    wa, wb = load_file(a / "adapter_model.safetensors"), load_file(b / "adapter_model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        x, y = wa[key].float(), wb[key].float()
        assert float((x - y).norm()) <= tolerance * max(float(y.norm()), 1e-6), key


def test_quota_refusals_leave_a_resumable_run_with_the_message_shown(space, tiny_model):
    from ftspace import runs

    app, hub, gpu, tmp = space
    carol_ip = ip_token("carol")
    carol = client(app, carol_ip)  # signed out: the anonymous tier
    run_id = value_of(carol.predict("c", *run_values(model_name=str(tiny_model), dataset="example:facts", max_steps=20,
                                                     max_seq_length=64, save_steps=1000, backend="auto"),
                                    api_name="/start")[0])
    gpu.used[carol_ip] = gpu.quota_s  # her quota is used up for today
    job = carol.submit("c", run_id, api_name="/train_on_gpu")
    list(job)
    assert not job.status().success
    message = str(job.exception())
    assert "quota" in message and "comes back in 2 h 31 min" in message and "Resume" in message, message
    assert "quota" in progress(carol, run_id, "c")  # the Train tab shows it too
    run = runs.Run(tmp / "runs" / run_id)
    assert run.status()["status"] == "interrupted"

    # Her page's proxy token has expired: ZeroGPU answers 401. The drive ends without an error toast (the page
    # asks again), the Train tab says what happened and what to do if nothing does.
    gpu.used[carol_ip] = 0.0
    gpu.expired.add(carol_ip)
    carol.predict("c", run_id, api_name="/resume")
    job = carol.submit("c", run_id, api_name="/train_on_gpu")
    list(job)
    assert job.status().success, job.exception()
    assert "token expired. The page asks again with a fresh one" in progress(carol, run_id, "c")
    assert run.status()["status"] == "interrupted" and run.status()["token_expired"]
    # Another visitor cannot take that request's place: her run is not theirs to resume (the same gate as Resume).
    n_schedules = len(gpu.schedules)
    refused(lambda: client(app, ip_token("mallory")).predict("m", run_id, api_name="/train_again_on_gpu"), "No run")
    assert len(gpu.schedules) == n_schedules and run.status()["status"] == "interrupted"
    # The page's next request (the event chained after every drive) carries a fresh token: the run resumes and
    # the drive goes on with it, through ZeroGPU busy twice and then a wait in its queue (retried), to the end.
    fresh_ip = ip_token("carol", renewed=1)
    gpu.busy_next, gpu.queue_next = 2, 1
    n_schedules = len(gpu.schedules)
    job = client(app, fresh_ip).submit("c", run_id, api_name="/train_again_on_gpu")
    list(job)
    assert job.status().success, job.exception()
    assert run.status()["status"] == "completed" and run.status()["step"] == 20
    assert run.status()["tier"] == "anonymous" and gpu.queue_next == 0 and not run.status()["token_expired"]
    calls = gpu.schedules[n_schedules:]
    assert len(calls) >= 3 and all(c.get("token") == fresh_ip for c in calls)
    gpu.expired.clear()
    # After a drive that did not end on an expired token, the page's next request does nothing.
    client(app, fresh_ip).predict("c", run_id, api_name="/train_again_on_gpu")
    assert len(gpu.schedules) == n_schedules + len(calls) and run.status()["status"] == "completed"
    assert all(int(c["durationSeconds"]) <= min(CALL_CAP_S, 60) for c in calls)
    assert [e["step"] for e in run.events()[0] if "loss" in e] == list(range(1, 21))  # each step once

    # ZeroGPU ends a call while it trains (here once its first step is logged, before the checkpoint the call saves
    # at its end): she is told, the run is resumable, and it completes from its last checkpoint.
    run_id = value_of(carol.predict("c", *run_values(model_name=str(tiny_model), dataset="example:facts",
                                                     max_steps=60, max_seq_length=64, save_steps=1000, backend="auto"),
                                    api_name="/start")[0])
    aborted = runs.Run(tmp / "runs" / run_id)
    gpu.abort_when = lambda: any("loss" in e for e in aborted.events()[0])
    try:
        job = carol.submit("c", run_id, api_name="/train_on_gpu")
        list(job)
        assert gpu.aborted and "was ended by ZeroGPU" in progress(carol, run_id, "c")
        assert aborted.status()["status"] == "interrupted" and aborted.status()["call_aborted"]
    finally:
        gpu.abort_when = None
    carol.predict("c", run_id, api_name="/resume")
    job = carol.submit("c", run_id, api_name="/train_on_gpu")
    list(job)
    assert job.status().success, job.exception()
    assert aborted.status()["status"] == "completed" and aborted.status()["step"] == 60

    # A duration the tier does not allow is refused before any GPU is given: said plainly, resumable.
    gpu.max_duration = 5
    try:
        run_id = value_of(carol.predict("c", *run_values(model_name=str(tiny_model), dataset="example:facts",
                                                         max_steps=4, max_seq_length=64, backend="auto"),
                                        api_name="/start")[0])
        job = carol.submit("c", run_id, api_name="/train_on_gpu")
        list(job)
        assert "does not allow calls that long" in str(job.exception())
        runs.prepare_resume(runs.Run(tmp / "runs" / run_id))
    finally:
        gpu.max_duration = 300
    # Still Unsloth in the GPU fork after Dataset checks, chats and pushes in this app: its process never
    # imported transformers (what it would pass on to the fork).
    assert run.read_status()["backend"] == "unsloth"
    assert app.alive()


def test_the_queue_takes_many_waiting_visitors_and_evaluations_never_hold_chats_slots(monkeypatch, runs_dir):
    """Gradio lets one request wait on ZeroGPU unless told a size (the next visitor: "Queue is full"); chat and
    evaluation are apart, and on ZeroGPU neither holds a Gradio slot while it waits for its GPU in ZeroGPU's queue
    (a visitor waiting there would make every other visitor's chat wait behind them); each visitor is held to
    FTSPACE_MAX_MODEL_SLOTS instead. Off ZeroGPU (models loaded in the app's process), two at a time."""
    import gradio as gr

    from ftspace.ui import build_app, queue_settings

    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setenv("FTSPACE_MULTIUSER", "1")
    assert gr.Blocks().queue(default_concurrency_limit=4)._queue.max_size == 1  # what Gradio does unless told
    assert gr.Blocks().queue(**queue_settings())._queue.max_size == 64
    monkeypatch.setenv("FTSPACE_MAX_WAITING", "200")
    assert queue_settings()["max_size"] == 200
    demo = build_app()
    try:
        groups = {fn.api_name: (fn.concurrency_id, fn.concurrency_limit) for fn in demo.fns.values()}
    finally:
        demo.ftspace_scheduler.shutdown()
    assert groups["chat"] == ("chat", None) and groups["evaluate"] == ("evaluate", None)
    monkeypatch.delenv("SPACES_ZERO_GPU")
    demo = build_app()
    try:
        groups = {fn.api_name: (fn.concurrency_id, fn.concurrency_limit) for fn in demo.fns.values()}
    finally:
        demo.ftspace_scheduler.shutdown()
    assert groups["chat"] == ("chat", 2) and groups["evaluate"] == ("evaluate", 2)
