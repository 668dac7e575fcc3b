"""Two people signed in with Hugging Face on one Space: each sees, stops, chats with and pushes only
their own runs, and their OAuth tokens end up nowhere.

The app runs as on a Space (SYSTEM=spaces, SPACE_ID, OAUTH_* variables) with the fake Hub as the
OpenID provider, so the sign-in is Gradio's real OAuth flow (authlib, signed id_token, session cookie),
done here with plain HTTP requests, once per user.
"""

import re
from urllib.parse import urljoin

import httpx
import pytest

from apptools import ROOT, App, progress
from fakehub import FakeHub
from test_app import run_values, value_of
from test_engine import wait_until

SPACE_ENV = {"SYSTEM": "spaces", "SPACE_ID": "tester/ftspace", "OAUTH_CLIENT_ID": "ftspace-test-client",
             "OAUTH_CLIENT_SECRET": "oauth-client-secret-not-a-token",
             "OAUTH_SCOPES": "openid profile write-repos manage-repos", "HF_HUB_OFFLINE": "0"}


def sign_in(app_url: str, fake: FakeHub, user: str) -> str:
    """Gradio's "Sign in with Hugging Face" as a browser does it; returns the session cookie."""
    fake.login_as = user
    cookie = None
    url = urljoin(app_url, "/login/huggingface")
    with httpx.Client(timeout=30) as http:
        for _ in range(6):  # app -> provider -> app callback -> app page
            # The session cookie is Secure (https only): carry it by hand over http://127.0.0.1.
            headers = {"Cookie": f"session={cookie}"} if cookie and url.startswith(app_url) else {}
            response = http.get(url, headers=headers)
            found = re.search(r"session=([^;]+)", response.headers.get("set-cookie", ""))
            if found and url.startswith(app_url):
                cookie = found.group(1)
            if response.status_code not in (302, 303, 307):
                break
            url = urljoin(url, response.headers["location"])
    assert cookie and response.status_code == 200, (response.status_code, response.text[:500])
    return cookie


def client_for(app, cookie):
    from gradio_client import Client

    return Client(app.url, verbose=False, headers={"Cookie": f"session={cookie}"})


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("space")
    with FakeHub(token="hf_unused_pat_000000") as fake, \
            App(tmp, HF_ENDPOINT=fake.url, OPENID_PROVIDER_URL=fake.url, **SPACE_ENV) as app:
        yield app, fake, tmp


def test_two_signed_in_users_cannot_reach_each_others_runs(space, tiny_model):
    from gradio_client.exceptions import AppError

    app, fake, tmp = space
    alice_cookie, bob_cookie = sign_in(app.url, fake, "alice"), sign_in(app.url, fake, "bob")
    alice, bob = client_for(app, alice_cookie), client_for(app, bob_cookie)
    browser = "same-browser-id-for-both"  # the owner is the account, not anything the client sends

    run_id = value_of(alice.predict(browser, *run_values(model_name=str(tiny_model), dataset="example:facts",
                                                         max_steps=6, max_seq_length=64, backend="hf"),
                                    api_name="/start")[0])
    assert run_id in str(alice.predict(browser, api_name="/runs"))
    assert run_id not in str(bob.predict(browser, api_name="/runs"))
    assert "No run" in progress(bob, run_id, browser)
    with pytest.raises(AppError, match="No run"):
        bob.predict(browser, run_id, api_name="/stop")
    wait_until(lambda: "**completed**" in progress(alice, run_id), timeout=300, what="alice's run to complete")
    with pytest.raises(AppError, match="No run"):
        bob.predict(browser, "a run of mine", run_id, "default", "", "", 4, 0.0, 0.95, False, "hi", [], [],
                    "its base model", api_name="/chat")
    with pytest.raises(AppError, match="No run"):
        bob.predict(browser, run_id, "stolen", False, False, "", "q8_0", False, api_name="/push")
    with pytest.raises(AppError, match="No run"):
        bob.predict(browser, run_id, api_name="/zip")
    with pytest.raises(AppError, match="not a run id"):
        bob.predict(browser, "../" + run_id, api_name="/stop")
    with pytest.raises(AppError, match="No run"):  # nor delete it, by its id or a path to it
        bob.predict(run_id, browser, api_name="/delete_run")
    with pytest.raises(AppError, match="No run"):  # nor see its loss curve beside his own
        bob.predict(browser, [run_id], api_name="/compare_runs")
    with pytest.raises(AppError, match="not a run id"):
        bob.predict("../" + run_id, browser, api_name="/delete_run")
    assert (tmp / "runs" / run_id / "adapter").is_dir()
    # A visitor who is not signed in, even sending the same browser id, sees none of it either.
    from gradio_client import Client

    assert run_id not in str(Client(app.url, verbose=False).predict(browser, api_name="/runs"))

    # Alice, signed in from another browser, finds her run: it belongs to her account.
    alice_elsewhere = client_for(app, sign_in(app.url, fake, "alice"))
    assert run_id in str(alice_elsewhere.predict("another-browser", api_name="/runs"))
    tuned, _, _ = alice_elsewhere.predict("another-browser", "a run of mine", run_id, "default", "", "", 4, 0.0,
                                          0.95, False, "hi", [], [], "its base model", api_name="/chat")
    assert tuned[-1]["role"] == "assistant"

    # Her push uses her OAuth token (no token typed), into her namespace.
    result = alice.predict(browser, run_id, "zorblax", True, False, "", "q8_0", False, api_name="/push")
    assert "alice/zorblax" in str(result)
    assert "adapter_model.safetensors" in fake.repos["alice/zorblax"]["files"]
    alice_token = fake.oauth_tokens[0]
    used = [{k.lower(): v for k, v in h.items()}.get("authorization") for m, p, h in fake.requests
            if m == "POST" and "/commit/" in p]
    assert used == [f"Bearer {alice_token}"]

    # The OAuth tokens, and the session cookies that carry them, are nowhere on disk or in any answer.
    secrets = fake.oauth_tokens + [alice_cookie, bob_cookie]
    assert len(fake.oauth_tokens) == 3
    leaks = [str(p) for p in tmp.rglob("*") if p.is_file() and any(s.encode() in p.read_bytes() for s in secrets)]
    assert leaks == []
    pushed = fake.repos["alice/zorblax"]["files"]
    assert not any(s.encode() in data for s in secrets for data in pushed.values())
    assert not any(s in str(result) for s in secrets)
    # Gradio's run history (which could replay a call) is off for this app.
    config = httpx.get(urljoin(app.url, "/config"), headers={"Cookie": f"session={alice_cookie}"}).json()
    assert config["run_history"] is False



def test_a_shared_app_reads_only_your_own_files(space, tiny_model, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    app, fake, tmp = space
    alice, bob = client_for(app, sign_in(app.url, fake, "alice")), client_for(app, sign_in(app.url, fake, "bob"))
    data = tmp_path / "..my data ü.jsonl"
    example = ROOT / "examples" / "facts.jsonl"
    data.write_text(example.read_text())
    mine = alice.predict(handle_file(str(data)), "", api_name="/upload")
    assert mine == "my_data__.jsonl (uploaded)"  # its name: where the server keeps it is not shown
    [stored] = (tmp / "uploads").glob("*/*/my_data__.jsonl")
    summary, *_, dataset, _, _, _, _, _ = alice.predict("", mine, "auto", "", "", "default", 256, api_name="/check")
    assert "kept" in summary and dataset == mine and str(tmp) not in summary

    def refused(client, *args, api_name, match):
        with pytest.raises(AppError, match=match):
            client.predict(*args, api_name=api_name)

    server_file = "on this shared app a dataset is"
    for path in (str(stored), "/etc/hostname", str(example), "../../examples/facts.jsonl", "~/.bashrc",
                 str(tmp / "uploads" / ".." / "app.log")):
        refused(bob, "", path, "auto", "", "", "default", 256, api_name="/check", match=server_file)
    not_yours = "no upload of yours has that name"
    refused(bob, "", mine, "auto", "", "", "default", 256, api_name="/check", match=not_yours)
    refused(bob, "", *run_values(dataset=mine), api_name="/start", match=not_yours)
    refused(bob, "", *run_values(dataset=str(stored)), api_name="/start", match=server_file)
    refused(bob, "", *run_values(dataset=mine), api_name="/estimate", match=not_yours)
    assert "steps" in alice.predict("", *run_values(dataset=mine), api_name="/estimate")
    refused(bob, "", *run_values(dataset="/etc/hostname"), api_name="/start", match=server_file)

    # Another user's adapter (anything inside the app's runs folder) is not a base model to load.
    adapter = tmp / "runs" / "20260101-000000-someone-else-0000" / "adapter"
    adapter.mkdir(parents=True)
    refused(bob, "", "a base model", None, str(adapter), "", "", 4, 0.0, 0.95, False, "hi", [], [], "its base model",
            api_name="/chat", match="on this shared app a base model is")
    refused(bob, "", *run_values(model_name=str(adapter)), api_name="/start", match="on this shared app a base model is")
    assert app.alive()
