"""A file that crashes the parser or the model worker three times is quarantined."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

import indexer.index as index_module
from indexer.embed import FakeEmbedder
from indexer.index import IndexSettings, RepositoryIndex
from indexer.quarantine import Quarantine
from lsp.core.pipeline import Cursor
from lsp.core.settings import parse_settings
from lsp.server.engine import Engine
from model.runtime.api import BackendCrashedError, CancelToken
from model.runtime.fake import FakeBackend


def test_the_third_crash_quarantines_until_the_version_changes() -> None:
    quarantine = Quarantine()
    assert not quarantine.crashed("a.py", "the parser", "v1")
    assert not quarantine.crashed("a.py", "the parser", "v1")
    assert not quarantine.blocked("a.py", "v1")
    assert quarantine.crashed("a.py", "the parser", "v1")
    assert quarantine.blocked("a.py", "v1")
    assert not quarantine.blocked("a.py", "v2")  # new content, new chance
    assert quarantine.quarantined() == ["a.py"]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "good.py").write_text("def fine():\n    return 1\n")
    (root / "bad.py").write_text("def poison():\n    return 2\n")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def test_a_file_that_crashes_the_parser_is_skipped_then_quarantined(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = index_module.parse_file
    attempts: list[str] = []

    def fragile(path: str, text: str, *args: Any, **kwargs: Any) -> Any:
        if path == "bad.py":
            attempts.append(path)
            raise RecursionError("the grammar blew up")
        return real(path, text, *args, **kwargs)

    monkeypatch.setattr(index_module, "parse_file", fragile)
    settings = IndexSettings(location=tmp_path / "index")
    with RepositoryIndex(repo, settings, embedder=FakeEmbedder()) as index:
        for _ in range(5):  # builds, re-scans: the rest of the repository is indexed each time
            index.update()
            assert set(index.store.file_states()) == {"good.py"}
        assert attempts == ["bad.py"] * 3
        assert index.quarantine.quarantined() == ["bad.py"]
        # Saving it unchanged does not try again; changing it does.
        assert not index.update_file("bad.py", "def poison():\n    return 2\n")
        assert len(attempts) == 3
        assert not index.update_file("bad.py", "def poison():\n    return 3\n")
        assert len(attempts) == 4


def engine_with(backend: FakeBackend) -> Engine:
    settings, problems = parse_settings(
        {"verify": {"ruff": False, "symbols": False, "syntax": False}}
    )
    assert problems == []
    return Engine(settings, root=None, report=lambda k, m: None, factory=lambda s: backend)


def cursor(path: str) -> Cursor:
    text = "def f(x):\n    return "
    return Cursor(path=path, language="python", text=text, offset=len(text))


@pytest.mark.parametrize(
    "fault",
    [
        BackendCrashedError("the model worker died (SIGSEGV) while generating"),
        RecursionError("maximum recursion depth exceeded in the verifier"),
    ],
)
async def test_a_file_that_crashes_completions_three_times_is_quarantined(
    fault: Exception,
) -> None:
    def respond(prompt: str) -> str:
        if "poison" in prompt:
            raise fault
        return "x + 1\n"

    backend = FakeBackend(respond=respond)
    engine = engine_with(backend)
    await engine.start()
    poison = Cursor("poison.py", "python", "poison = 1\n", len("poison = 1\n"))
    for _ in range(3):
        assert await engine.complete(poison, CancelToken()) is None
    asked = len(backend.requests)
    assert await engine.complete(poison, CancelToken()) is None
    assert len(backend.requests) == asked, "a quarantined file never reaches the model"
    result = await engine.complete(cursor("fine.py"), CancelToken())
    assert result is not None and result.text == "x + 1"
    engine.close()


def test_apprentice_status_lists_quarantined_files() -> None:
    from lsp.server.language_server import build_server

    server = build_server()
    server.engine = engine_with(FakeBackend())
    assert server.status()["quarantined"] == []
    for _ in range(3):
        server.engine.quarantine.crashed("poison.py", "the model worker")
    assert server.status()["quarantined"] == ["poison.py"]
    server.engine.close()
