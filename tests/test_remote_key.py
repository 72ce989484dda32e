"""APPRENTICE_API_KEY never travels over plain http to another machine."""

from __future__ import annotations

import pytest

from model.runtime.api import BackendUnavailableError, CompletionRequest
from model.runtime.remote import API_KEY_ENV, RemoteBackend
from tests.openai_stub import running_stub as serve


@pytest.mark.parametrize(
    "url", ["http://10.1.2.3:8080", "http://models.example.com/v1", "http://[2001:db8::1]:80"]
)
def test_a_key_is_not_sent_over_http_to_another_host(url: str) -> None:
    with pytest.raises(BackendUnavailableError, match="https"):
        RemoteBackend(url, api_key="sk-secret")


def test_the_key_from_the_environment_counts_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, "sk-secret")
    with pytest.raises(BackendUnavailableError, match=API_KEY_ENV):
        RemoteBackend("http://192.0.2.7:8000")


@pytest.mark.parametrize(
    "url",
    [
        "https://models.example.com/v1",
        "http://127.0.0.1:8080",
        "http://127.8.9.10:8080",
        "http://localhost:8080",
        "http://[::1]:8080",
    ],
)
def test_https_or_this_machine_may_carry_a_key(url: str) -> None:
    with_key = RemoteBackend(url, api_key="sk-secret")  # refused above for other hosts
    plain = url.replace("https://", "http://")
    if plain != url:  # the same host over plain http is refused: the scheme decided it
        with pytest.raises(BackendUnavailableError, match="https"):
            RemoteBackend(plain, api_key="sk-secret")
    assert "sk-secret" not in repr(with_key)


def test_the_key_goes_to_a_server_on_this_machine_as_a_bearer_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(API_KEY_ENV, "sk-from-env")
    with serve("x = 1\n") as stub:
        backend = RemoteBackend(stub.url)
        assert backend.info().name == "stub"
        backend.complete(CompletionRequest(prompt=("x = ",), max_tokens=4)).text()
    assert stub.authorizations == ["Bearer sk-from-env", "Bearer sk-from-env"]


def test_no_key_no_objection_and_no_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    RemoteBackend("http://10.1.2.3:8080")  # plain http elsewhere is fine without a key
    with serve("x = 1\n") as stub:
        RemoteBackend(stub.url).complete(CompletionRequest(prompt=("x = ",), max_tokens=4)).text()
    assert stub.authorizations == [None, None]  # the model list, then the completion
