"""Which token acts: one rule in ftspace.access, for the app and the CLI alike."""

import pytest

from ftspace import access

SERVER = "hf_server_secret_do_not_use_for_visitors"


@pytest.fixture
def server_token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SERVER)
    monkeypatch.delenv("FTSPACE_MULTIUSER", raising=False)
    monkeypatch.delenv("SYSTEM", raising=False)


def test_self_hosted_uses_a_typed_token_else_the_machines(server_token):
    assert access.hub_token() == SERVER
    assert access.hub_token(typed="  hf_typed  ") == "hf_typed"


@pytest.mark.parametrize("shared", [{"FTSPACE_MULTIUSER": "1"}, {"SYSTEM": "spaces", "SPACE_ID": "o/s"}])
def test_a_shared_app_never_hands_a_visitor_the_servers_token(server_token, monkeypatch, shared):
    for key, value in shared.items():
        monkeypatch.setenv(key, value)
    assert access.hub_token() is None  # signed out: no token at all
    assert access.hub_token(oauth_token="hf_oauth_alice") == "hf_oauth_alice"
    assert access.hub_token(typed="hf_typed_by_bob") == "hf_typed_by_bob"
    env = access.worker_env({"HF_TOKEN": SERVER, "HUGGING_FACE_HUB_TOKEN": SERVER, "PATH": "/bin"})
    assert SERVER not in env.values() and env["HF_HUB_OFFLINE"] == "1" and env["PATH"] == "/bin"


def test_token_false_means_none_is_sent():
    assert access.as_hub_arg(None) is False and access.as_hub_arg("hf_x") == "hf_x"


def test_tiers():
    assert [access.tier(False), access.tier(True), access.tier(True, is_pro=True)] == ["anonymous", "free", "pro"]


def test_a_teacher_key_is_the_typed_one_and_on_a_shared_app_only_that(server_token, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-server-key")
    assert access.teacher_key() == "sk-server-key" and access.teacher_key(" sk-typed ") == "sk-typed"
    monkeypatch.setenv("FTSPACE_MULTIUSER", "1")
    assert access.teacher_key() is None and access.teacher_key("sk-typed") == "sk-typed"


def test_on_a_shared_app_a_teacher_url_on_the_servers_network_is_refused(server_token, monkeypatch):
    from ftspace.errors import ConfigError

    access.check_teacher_url("http://127.0.0.1:8080/v1")  # self-hosted: a local llama.cpp is the point
    monkeypatch.setenv("FTSPACE_MULTIUSER", "1")
    for url in ("http://127.0.0.1:8080/v1", "http://localhost:11434", "http://169.254.169.254/latest",
                "http://10.0.0.5/v1", "http://[::1]:8000/v1", "http://0.0.0.0:80"):
        with pytest.raises(ConfigError, match="on this server's own network"):
            access.check_teacher_url(url)
    with pytest.raises(ConfigError, match="cannot resolve"):
        access.check_teacher_url("http://no-such-host.invalid/v1")
    access.check_teacher_url("http://93.184.215.14/v1")  # a public address passes (resolving needs no network)
