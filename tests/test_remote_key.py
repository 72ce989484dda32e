"""APPRENTICE_API_KEY never travels over plain http to another machine."""

from __future__ import annotations

import pytest

from model.api import BackendUnavailableError
from model.remote import API_KEY_ENV, RemoteBackend


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
    RemoteBackend(url, api_key="sk-secret")


def test_no_key_no_objection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    RemoteBackend("http://10.1.2.3:8080")
