"""The user's settings file (lsp/core/user_settings.py): defaults beneath the editor's settings."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pytest

from lsp.cli.workspace import complete_settings
from lsp.core.settings import ServerSettings
from lsp.core.user_settings import ENV_VAR, layered, load_user_settings, settings_path


def _write(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "settings.json"
    text = content if isinstance(content, str) else json.dumps(content)
    path.write_text(text, encoding="utf-8")
    return path


def test_where_the_file_lives(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert settings_path() == tmp_path / "config" / "apprentice" / "settings.json"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert settings_path() == tmp_path / "home" / ".config" / "apprentice" / "settings.json"
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "team.json"))
    assert settings_path() == tmp_path / "team.json"


def test_a_missing_file_is_no_settings(tmp_path: Path) -> None:
    user = load_user_settings(tmp_path / "absent.json")
    assert (user.found, user.raw, user.problems) == (False, {}, ())
    assert layered(None, user) == (ServerSettings(), [])


def test_the_file_lies_beneath_the_editor(tmp_path: Path) -> None:
    user = load_user_settings(
        _write(
            tmp_path,
            {"model": {"path": "acme@1.0", "threads": 3}, "completion": {"candidates": 4}},
        )
    )
    assert user.problems == ()
    assert sorted(user.keys()) == ["completion.candidates", "model.path", "model.threads"]
    settings, problems = layered({"apprentice": {"model": {"threads": 1}}}, user)
    assert problems == []
    assert settings.model.path == "acme@1.0"  # from the file
    assert settings.model.threads == 1  # the editor wins
    assert settings.completion.candidates == 4


def test_the_file_may_be_wrapped_like_vscode_settings(tmp_path: Path) -> None:
    user = load_user_settings(_write(tmp_path, {"apprentice": {"logLevel": "debug"}}))
    assert layered({}, user)[0].log_level == "debug"


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("{not json", "is not JSON"),
        ("[1, 2]", "holds a list"),
        ('"model"', "holds a str"),
        (b"\xff\xfe".decode("latin-1"), "is not JSON"),
    ],
)
def test_bad_content_is_one_log_line_and_defaults(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str, why: str
) -> None:
    path = _write(tmp_path, content)
    with caplog.at_level(logging.WARNING, logger="lsp.core.user_settings"):
        user = load_user_settings(path)
    assert len(caplog.records) == 1
    assert why in caplog.records[0].getMessage()
    assert str(path) in caplog.records[0].getMessage()
    assert user.found and user.raw == {} and len(user.problems) == 1
    assert layered(None, user) == (ServerSettings(), [])


def test_undecodable_bytes_are_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "settings.json"
    path.write_bytes(b'{"logLevel": "\xff"}')
    with caplog.at_level(logging.WARNING, logger="lsp.core.user_settings"):
        user = load_user_settings(path)
    assert user.raw == {} and len(caplog.records) == 1


def test_an_unreadable_path_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "settings.json"
    folder.mkdir()  # a directory where the file should be
    with caplog.at_level(logging.WARNING, logger="lsp.core.user_settings"):
        user = load_user_settings(folder)
    assert user.raw == {} and len(caplog.records) == 1
    assert "cannot be read" in caplog.records[0].getMessage()


def test_a_huge_file_is_not_read(tmp_path: Path) -> None:
    user = load_user_settings(_write(tmp_path, " " * (2 << 20) + "{}"))
    assert user.raw == {} and "more than" in user.problems[0]


def test_bad_keys_are_dropped_one_line_the_rest_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(
        tmp_path,
        {
            "model": {"path": "acme", "threads": "four", "colour": "red"},
            "completion": {"candidates": 0, "debounceMs": 40},
            "verify": 3,
            "languages": ["python"],
            "surprise": True,
        },
    )
    with caplog.at_level(logging.WARNING, logger="lsp.core.user_settings"):
        user = load_user_settings(path)
    assert len(caplog.records) == 1
    line = caplog.records[0].getMessage()
    for bad in ("model.threads", "model.colour", "completion.candidates", "verify", "surprise"):
        assert bad in line
    assert sorted(user.keys()) == ["completion.debounceMs", "languages", "model.path"]
    settings, problems = layered(None, user)
    assert problems == []
    assert (settings.model.path, settings.completion.debounce_ms) == ("acme", 40)
    assert settings.languages == ("python",)
    assert settings.completion.candidates == ServerSettings().completion.candidates


def test_a_bad_editor_value_keeps_the_files(tmp_path: Path) -> None:
    user = load_user_settings(_write(tmp_path, {"completion": {"candidates": 3}}))
    settings, problems = layered({"completion": {"candidates": -1}}, user)
    assert settings.completion.candidates == 3
    assert len(problems) == 1 and "completion.candidates" in problems[0]
    _, problems = layered(["not", "an", "object"], user)
    assert problems == ["settings: expected an object, got list"]


def test_the_signature_policy_is_a_floor(tmp_path: Path) -> None:
    policy = {"model": {"path": "acme", "requireSignature": True, "trustedKeys": ["k.pub"]}}
    user = load_user_settings(_write(tmp_path, policy))
    # VS Code sends every default: requireSignature false, and keys of the workspace's choosing.
    sent = {"model": {"requireSignature": False, "trustedKeys": ["evil.pub"], "path": "other"}}
    settings, _ = layered(sent, user)
    assert settings.model.require_signature is True
    assert settings.model.trusted_keys == ("k.pub",)
    assert settings.model.path == "other"  # still refused unless signed by k.pub
    # A file without the policy leaves it to the editor.
    open_file = load_user_settings(_write(tmp_path, {"model": {"requireSignature": False}}))
    assert layered({"model": {"requireSignature": True}}, open_file)[0].model.require_signature


def _complete_args(*extra: str) -> argparse.Namespace:
    from lsp.cli import build_parser

    return build_parser().parse_args(["complete", "f.py", "--line", "0", "--col", "0", *extra])


def test_apprentice_complete_reads_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, {"model": {"path": "acme"}, "completion": {"candidates": 5}})
    monkeypatch.setenv(ENV_VAR, str(path))
    settings = complete_settings(_complete_args())
    assert (settings.model.path, settings.completion.candidates) == ("acme", 5)
    flagged = complete_settings(_complete_args("--candidates", "1", "--model", "base"))
    assert (flagged.model.path, flagged.completion.candidates) == ("base", 1)
    monkeypatch.setenv(ENV_VAR, str(_write(tmp_path, "garbage")))
    assert complete_settings(_complete_args()) == ServerSettings()


def test_the_server_reads_the_file_under_the_editor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lsp.server.language_server import ApprenticeServer

    path = _write(tmp_path, {"completion": {"debounceMs": 77}, "logLevel": "warning"})
    monkeypatch.setenv(ENV_VAR, str(path))
    server = ApprenticeServer()
    server.configure({"apprentice": {"completion": {"candidates": 3}}}, initial=True)
    assert server.settings.completion.debounce_ms == 77
    assert server.settings.completion.candidates == 3
    assert server.settings.log_level == "warning"
    # Read again at each change of the editor's settings.
    path.write_text(json.dumps({"completion": {"debounceMs": 5}}), encoding="utf-8")
    server.configure({}, initial=True)
    assert server.settings.completion.debounce_ms == 5
    logging.getLogger().setLevel(logging.WARNING)
