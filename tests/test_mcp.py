"""The MCP server: a real MCP client (the `mcp` package) against the launched app (FTSPACE_MCP=1), on a shared
app (FTSPACE_MULTIUSER=1) whose callers say who they are with their Hub token (a fake Hub on 127.0.0.1)."""

import asyncio
import json
import time

import pytest
from apptools import App, files_containing
from fakehub import FakeHub

ALICE, BOB, SERVER = "hf_alice_token_0123456789", "hf_bob_token_9876543210", "hf_server_secret_5555555555"
TOOLS = {"inspect_dataset", "estimate_run", "start_run", "run_progress", "list_runs", "stop_run", "resume_run",
         "ask_model", "export_gguf", "push_adapter"}
ROWS = "\n".join(json.dumps({"instruction": f"What is {i} plus {i}?", "output": f"{i} plus {i} is {2 * i}."})
                 for i in range(12))


async def _session(url: str, token: str | None, work, headers: dict | None = None):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    headers = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
    async with streamablehttp_client(url + "gradio_api/mcp/", headers=headers) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            return await work(session)


def list_tools(app, token=None):
    async def work(session):
        return (await session.list_tools()).tools
    return asyncio.run(_session(app.url, token, work))


def call(app, token, tool, headers=None, **arguments):
    """(ok, payload): the tool's JSON answer, or its error text."""
    async def work(session):
        return await session.call_tool(tool, arguments)
    result = asyncio.run(_session(app.url, token, work, headers))
    text = "".join(getattr(c, "text", "") for c in result.content)
    if result.isError:
        return False, text
    return True, json.loads(text)


def wait_for(app, run_id, done, timeout=300) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        ok, progress = call(app, ALICE, "run_progress", run_id=run_id)
        assert ok, progress
        if done(progress):
            return progress
        assert progress["status"] in ("queued", "running", "stopping"), progress
        time.sleep(0.5)
    raise AssertionError(f"{run_id}: still {progress}")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mcp")
    with FakeHub(token=ALICE, user="alice") as fake:
        fake.tokens[BOB] = "bob"
        fake.tokens[SERVER] = "server-owner"
        with App(tmp, FTSPACE_MCP="1", FTSPACE_MULTIUSER="1", HF_TOKEN=SERVER, HF_ENDPOINT=fake.url,
                 HF_HUB_OFFLINE="0", HF_DATASETS_OFFLINE="0") as app:
            yield app, fake, tmp


def test_agent_inspects_starts_follows_asks_and_pushes(served, tiny_model):
    app, fake, tmp = served
    started = time.time()
    tools = list_tools(app, ALICE)
    assert {t.name for t in tools} == TOOLS  # the agents' tools and nothing else (no tab endpoints)
    for t in tools:  # each has a description an agent can act on, and documented arguments
        assert len(t.description) > 60, t.name
        assert all(p.get("description") for p in t.inputSchema["properties"].values()), t.name

    # inspect: rows sent as text become alice's upload, named, never a server path
    ok, found = call(app, ALICE, "inspect_dataset", dataset="sums.jsonl", rows_jsonl=ROWS, max_seq_length=128)
    assert ok, found
    assert found["dataset"] == "sums.jsonl (uploaded)" and found["report"]["rows_kept"] == 12
    assert found["report"]["format"] == "alpaca" and str(tmp) not in json.dumps(found)

    settings = {"model_name": str(tiny_model), "dataset": found["dataset"], "max_steps": 2, "max_seq_length": 128,
                "gradient_checkpointing": False, "test_size": 0}
    ok, estimate = call(app, None, "estimate_run", settings={**settings, "dataset": "example:alpaca"})
    assert ok and estimate["steps"] == 2 and "training rows" in estimate["summary"], estimate
    ok, bad = call(app, ALICE, "estimate_run", settings={**settings, "lora_r": 0})
    assert not ok and "lora_r = 0 is out of range" in bad

    # a caller without a token on a shared app may inspect and estimate, not run
    ok, refused = call(app, None, "start_run", settings=settings)
    assert not ok and "Authorization: Bearer" in refused

    ok, run = call(app, ALICE, "start_run", config_yaml="max_steps: 5\nlora_r: 4", settings=settings)
    assert ok, run
    run_id = run["run_id"]
    assert run["config"]["lora_r"] == 4 and run["config"]["max_steps"] == 2  # settings win over the YAML
    assert run["config"]["dataset"] == "sums.jsonl (uploaded)"

    deadline, progress = time.time() + 600, {}
    while time.time() < deadline:
        ok, progress = call(app, ALICE, "run_progress", run_id=run_id)
        assert ok, progress
        if progress["status"] not in ("queued", "running"):
            break
        time.sleep(0.2)
    assert progress["status"] == "completed" and progress["step"] == 2 and progress["has_adapter"], progress
    assert progress["log"] and str(tmp) not in json.dumps(progress)

    # bob (another account) sees none of it
    ok, listed = call(app, BOB, "list_runs")
    assert ok and listed == []
    for tool, extra in (("run_progress", {}), ("ask_model", {"prompt": "hi"}), ("stop_run", {}),
                        ("resume_run", {}), ("export_gguf", {}), ("push_adapter", {"repo": "stolen"})):
        ok, answer = call(app, BOB, tool, run_id=run_id, **extra)
        assert not ok and f"No run '{run_id}'" in answer, (tool, answer)
    ok, listed = call(app, ALICE, "list_runs")
    assert ok and [r["id"] for r in listed] == [run_id]

    ok, answer = call(app, ALICE, "ask_model", run_id=run_id, prompt="What is 2 plus 2?", max_new_tokens=4,
                      compare_base=True)
    # the run's own model answered, adapter on and off: the library's replies on that adapter, word for word
    from ftspace.chat import ChatModel, GenerationSettings

    [adapter] = [p for p in tmp.rglob("adapter") if p.parent.name == run_id]
    library = ChatModel.from_adapter(adapter)
    asked = [{"role": "user", "content": "What is 2 plus 2?"}]
    assert ok and answer == {side: library.reply(asked, GenerationSettings(max_new_tokens=4), base=side == "base")
                             for side in ("tuned", "base")}, answer

    # a GGUF export of her run, checked against it; the agent gets the figures and the Modelfile, no server path
    ok, exported = call(app, ALICE, "export_gguf", run_id=run_id, gguf_type="q8_0")
    assert ok and exported["file"] == f"{run_id}-Q8_0.gguf" and exported["type"] == "q8_0", exported
    assert exported["parity"][0]["reader"] == "transformers" and exported["parity"][0]["decided_changes"] == []
    assert exported["modelfile"].startswith(f"FROM ./{run_id}-Q8_0.gguf") and str(tmp) not in json.dumps(exported)
    ok, answer = call(app, ALICE, "export_gguf", run_id=run_id, gguf_type="q3")
    assert not ok and "Unknown GGUF type 'q3'" in answer, answer

    # push with the caller's own token: the repo lands under alice's account, the server's token never used
    ok, pushed = call(app, ALICE, "push_adapter", run_id=run_id, repo="sums-adapter")
    assert ok and pushed["url"].endswith("alice/sums-adapter"), pushed
    assert fake.repos["alice/sums-adapter"]["private"] is True
    assert "adapter_model.safetensors" in fake.repos["alice/sums-adapter"]["files"]
    assert not any(SERVER in (h.get("Authorization") or "") for _, _, h in fake.requests)

    # stop and resume: a long run stops after a step with its adapter; resumed, it trains on from its checkpoint
    ok, long_run = call(app, ALICE, "start_run", settings={**settings, "max_steps": 400, "save_steps": 2})
    assert ok, long_run
    long_id = long_run["run_id"]
    stopped_at = wait_for(app, long_id, lambda p: p["status"] == "running" and p["step"] >= 3)["step"]
    ok, stopping = call(app, ALICE, "stop_run", run_id=long_id)
    assert ok and stopping["status"] in ("stopping", "completed"), stopping
    done = wait_for(app, long_id, lambda p: p["status"] not in ("running", "queued", "stopping"))
    assert done["status"] == "completed" and done["has_adapter"] and done["step"] < 400, done
    ok, resumed = call(app, ALICE, "resume_run", run_id=long_id)
    assert ok and resumed["status"] in ("queued", "running"), resumed
    wait_for(app, long_id, lambda p: p["status"] == "running" and p["step"] > done["step"] >= stopped_at)
    call(app, ALICE, "stop_run", run_id=long_id)
    wait_for(app, long_id, lambda p: p["status"] not in ("running", "queued", "stopping"))

    ok, refused = call(app, "hf_not_a_token_000000000", "list_runs")
    assert not ok and "refused the token" in refused
    for secret in (ALICE, BOB, SERVER):
        assert not files_containing(secret, tmp, since=started), secret


def test_an_agent_trains_on_zerogpu_billed_to_its_own_quota(tmp_path_factory, tiny_model):
    """On a ZeroGPU Space (the real `spaces` wrapper against a fake device API) start_run returns at once; each
    run_progress then makes the run's next GPU call from the agent's own request: each carries the x-ip-token its
    MCP client sent, never none. A request without one is refused in one line, before anything is queued."""
    from fakezerogpu import FakeZeroGPU
    from test_oauth import SPACE_ENV
    from test_space import CALL_CAP_S, ROOT, ip_token

    tmp = tmp_path_factory.mktemp("mcp-zerogpu")
    with FakeHub(token=SERVER, user="owner") as hub, FakeZeroGPU() as gpu:
        hub.tokens[ALICE] = "alice"
        env = dict(SPACE_ENV, FTSPACE_MCP="1", HF_ENDPOINT=hub.url, OPENID_PROVIDER_URL=hub.url, HF_TOKEN=SERVER,
                   HF_DATASETS_OFFLINE="0", SPACES_ZERO_GPU="true", SPACES_ZERO_DEVICE_API_URL=gpu.url,
                   PYTHONPATH=f"{ROOT / 'tests' / 'zerogpu_shim'}:{ROOT}", FTSPACE_ZEROGPU_MAX_CALL_S=str(CALL_CAP_S),
                   FTSPACE_SAVE_MARGIN_S="2", FTSPACE_ZEROGPU_RETRY_S="0.2,0.2,0.2")
        with App(tmp, **env) as app:
            prefix = SPACE_ENV["SPACE_ID"].split("/")[-1] + "_"  # Gradio names a Space's tools after it
            alice_ip = ip_token("alice")
            settings = {"model_name": str(tiny_model), "dataset": "example:alpaca", "max_steps": 40,
                        "max_seq_length": 64, "save_steps": 1000}
            ok, refused = call(app, ALICE, prefix + "start_run", settings=settings)  # no x-ip-token: nobody to bill
            assert not ok and "carries none: train from the Space's page, or start the run with train_on: hf_jobs" \
                in refused, refused
            ok, run = call(app, ALICE, prefix + "start_run", headers={"x-ip-token": alice_ip}, settings=settings)
            assert ok, run + (tmp / "app.log").read_text()[-3000:]
            assert run["status"] == "queued" and gpu.schedules == [], run  # at once: no GPU call yet
            polls, progress = 0, {}
            while polls < 20 and progress.get("status") != "completed":
                ok, progress = call(app, ALICE, prefix + "run_progress", headers={"x-ip-token": alice_ip},
                                    run_id=run["run_id"])
                assert ok and progress["status"] in ("queued", "running", "completed"), progress
                polls += 1
            assert progress["status"] == "completed" and progress["step"] == 40 and progress["has_adapter"], progress
            # One GPU call per poll, each billed to alice (the first poll's call also imports Unsloth: one step).
            assert len(gpu.schedules) == polls >= 2, (polls, gpu.schedules)
            assert all(c.get("token") == alice_ip for c in gpu.schedules), gpu.schedules
            ok, answer = call(app, ALICE, prefix + "ask_model", headers={"x-ip-token": alice_ip},
                              run_id=run["run_id"], prompt="hi", max_new_tokens=4)
            # answered in a GPU call by the run's own model: the library's reply on that adapter, word for word
            from ftspace.chat import ChatModel, GenerationSettings

            [adapter] = [p for p in tmp.rglob("adapter") if p.parent.name == run["run_id"]]
            expected = ChatModel.from_adapter(adapter).reply([{"role": "user", "content": "hi"}],
                                                             GenerationSettings(max_new_tokens=4))
            # (the GPU call returns the streamed text unstripped: the same tokens, whitespace kept)
            assert ok and answer["tuned"] and answer["tuned"].strip() == expected.strip(), (answer, expected)
            assert all(c.get("token") == alice_ip for c in gpu.schedules), gpu.schedules
