"""The server's model engine with team checkpoints: verified before loading, a refused switch
keeps the model that was serving (a fake backend stands in for llama.cpp)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsp.core.pipeline import Cursor
from lsp.core.settings import ServerSettings, parse_settings
from lsp.server.engine import Engine
from model.checkpoints.pack import pack_checkpoint
from model.factory import BackendSettings
from model.runtime.api import CancelToken, ModelInfo
from model.runtime.fake import FakeBackend
from tests.gguf_writer import tiny_model


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return tiny_model().write(tmp_path / "base.gguf")


def checkpoint(tmp_path: Path, base: Path, version: str) -> Path:
    return pack_checkpoint(tmp_path / version, base, name="acme", version=version).directory


class Harness:
    """An engine whose factory hands out fake backends named after what they were asked for."""

    def __init__(self, path: Path) -> None:
        self.reports: list[tuple[str, str]] = []
        self.made: list[BackendSettings] = []
        settings = self.settings(path)
        self.engine = Engine(
            settings, root=None, report=lambda k, m: self.reports.append((k, m)), factory=self.make
        )

    @staticmethod
    def settings(path: Path) -> ServerSettings:
        settings, problems = parse_settings(
            {"model": {"path": str(path)}, "verify": {"ruff": False, "symbols": False}}
        )
        assert problems == []
        return settings

    def make(self, settings: BackendSettings) -> FakeBackend:
        self.made.append(settings)
        label = (
            settings.resolved.manifest.label
            if settings.resolved and settings.resolved.manifest
            else "?"
        )
        return FakeBackend(
            respond=lambda p: f"{label.replace('@', '_').replace('.', '_')}\n",
            info_value=ModelInfo(name=label),
        )

    async def switch(self, path: Path) -> None:
        future = self.engine.reconfigure(self.settings(path))
        assert future is not None
        await future

    async def suggestion(self) -> str | None:
        cursor = Cursor(path="a.py", language="python", text="x = ", offset=4)
        result = await self.engine.complete(cursor, CancelToken(), budget=False)
        return result.text if result is not None else None


async def test_a_checkpoint_is_verified_then_served(tmp_path: Path, base: Path) -> None:
    harness = Harness(checkpoint(tmp_path, base, "1.0"))
    await harness.engine.start()
    status = harness.engine.status
    assert status.state == "ready" and status.name == "acme@1.0"
    assert status.checkpoint["verified"] is True and status.checkpoint["version"] == "1.0"
    resolved = harness.made[0].resolved
    assert resolved is not None and resolved.verified
    assert await harness.suggestion() == "acme_1_0"
    harness.engine.close()


async def test_a_refused_switch_keeps_the_model_that_was_serving(
    tmp_path: Path, base: Path
) -> None:
    harness = Harness(checkpoint(tmp_path, base, "1.0"))
    await harness.engine.start()
    tampered = checkpoint(tmp_path, base, "2.0")
    (tampered / "base.gguf").unlink()
    (tampered / "base.gguf").write_bytes(tiny_model(architecture="qwen2").build())

    await harness.switch(tampered)

    status = harness.engine.status
    assert status.state == "ready" and status.name == "acme@1.0"
    assert status.refused is not None and "sha256 check failed" in status.refused
    assert len(harness.made) == 1  # the bad checkpoint never reached the factory
    [(_, message)] = harness.reports
    assert str(tampered / "base.gguf") in message and "acme@1.0 keeps serving" in message
    assert await harness.suggestion() == "acme_1_0"
    assert "1.0" in harness.engine.describe_backend()

    good = checkpoint(tmp_path, base, "3.0")
    await harness.switch(good)
    assert harness.engine.status.name == "acme@3.0" and harness.engine.status.refused is None
    assert await harness.suggestion() == "acme_3_0"
    harness.engine.close()


async def test_a_bad_checkpoint_with_nothing_serving_is_an_error(
    tmp_path: Path, base: Path
) -> None:
    directory = checkpoint(tmp_path, base, "1.0")
    (directory / "apprentice-model.toml").write_text("schema = 99\n")
    harness = Harness(directory)
    await harness.engine.start()
    assert harness.engine.status.state == "error"
    assert "schema check failed" in (harness.engine.status.error or "")
    assert harness.made == [] and await harness.suggestion() is None
    harness.engine.close()


async def test_an_untrusted_checkpoint_is_refused_by_the_policy_settings(
    tmp_path: Path, base: Path
) -> None:
    from model.checkpoints.signing import generate_keypair

    generate_keypair(tmp_path / "team.key")
    generate_keypair(tmp_path / "other.key")
    signed = pack_checkpoint(
        tmp_path / "s", base, name="acme", version="1.0", sign_key=tmp_path / "other.key"
    ).directory
    settings, problems = parse_settings(
        {
            "model": {
                "path": str(signed),
                "requireSignature": True,
                "trustedKeys": [str(tmp_path / "team.key.pub")],
            }
        }
    )
    assert problems == []
    reports: list[str] = []
    engine = Engine(
        settings, root=None, report=lambda k, m: reports.append(m), factory=lambda s: FakeBackend()
    )
    await engine.start()
    assert engine.status.state == "error" and "not among the trusted keys" in reports[0]
    engine.close()


async def test_an_unusable_trusted_key_is_one_clear_message(tmp_path: Path, base: Path) -> None:
    settings, _ = parse_settings(
        {"model": {"path": str(checkpoint(tmp_path, base, "1.0")), "trustedKeys": ["nonsense"]}}
    )
    reports: list[str] = []
    engine = Engine(
        settings, root=None, report=lambda k, m: reports.append(m), factory=lambda s: FakeBackend()
    )
    await engine.start()
    assert engine.status.state == "error"
    [message] = reports
    assert "a trusted key is unusable" in message and "not a public key" in message
    engine.close()


async def test_any_failed_reload_keeps_the_model_that_was_serving(tmp_path: Path) -> None:
    """Not only checkpoints: a model that llama.cpp refuses, or a path that is gone."""
    from model.runtime.api import InvalidModelError

    good = tiny_model().write(tmp_path / "good.gguf")
    bad = tiny_model().write(tmp_path / "bad.gguf")

    def factory(settings: BackendSettings) -> FakeBackend:
        if settings.model_path == str(bad):
            raise InvalidModelError("llama.cpp could not load bad.gguf: unknown architecture")
        return FakeBackend(respond=lambda p: "1\n", info_value=ModelInfo(name="good"))

    reports: list[str] = []
    settings = Harness.settings(good)
    engine = Engine(settings, root=None, report=lambda k, m: reports.append(m), factory=factory)
    await engine.start()
    for path in (bad, tmp_path / "gone.gguf"):
        future = engine.reconfigure(Harness.settings(path))
        assert future is not None
        await future
        assert engine.status.state == "ready" and engine.status.name == "good"
        assert engine.pipeline is not None
    assert len(reports) == 2 and all("good keeps serving" in m for m in reports)
    assert "unknown architecture" in reports[0] and "gone.gguf" in reports[1]
    engine.close()
