"""What is loaded is what was verified: an adapter given by path under a signature policy,
and a file swapped on disk between verification and a worker's (re)load."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from lsp.core.settings import parse_settings
from lsp.server.engine import Engine
from model.checkpoints.checkpoint import HashCache, Policy, resolve_model
from model.checkpoints.manifest import CheckpointError
from model.checkpoints.pack import pack_checkpoint
from model.checkpoints.signing import generate_keypair
from model.factory import BackendSettings, create_backend
from model.runtime.api import CompletionRequest
from model.runtime.fake import FakeBackend
from model.runtime.gguf import read_gguf
from model.runtime.llama_backend import LlamaCppBackend
from tests.gguf_writer import tiny_model
from tests.lora_gguf import write_lora


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return tiny_model().write(tmp_path / "base.gguf")


@pytest.fixture
def adapter(tmp_path: Path, base: Path) -> Path:
    return write_lora(tmp_path / "loose.lora.gguf", read_gguf(base), ["blk.0.attn_q.weight"])


@pytest.fixture
def team_key(tmp_path: Path) -> Path:
    generate_keypair(tmp_path / "team.key", "ACME ML")
    return tmp_path / "team.key"


def test_an_unsigned_adapter_by_path_is_refused_when_signatures_are_required(
    tmp_path: Path, base: Path, adapter: Path, team_key: Path
) -> None:
    signed = pack_checkpoint(
        tmp_path / "ckpt", base, name="acme", version="1", sign_key=team_key
    ).directory
    policy = Policy.from_specs([f"{team_key}.pub"], require=True)
    cache = HashCache(tmp_path / "h.json")
    assert resolve_model(str(signed), policy=policy, cache=cache).verified  # alone: fine
    with pytest.raises(CheckpointError, match="carries no signature") as caught:
        resolve_model(str(signed), lora=str(adapter), policy=policy, cache=cache)
    assert caught.value.check == "signature" and caught.value.file == str(adapter)
    # Without the policy it still loads (logged as unverified), pinned to its digest.
    resolved = resolve_model(str(signed), lora=str(adapter), cache=cache)
    assert resolved.loras[-1].path == adapter and len(resolved.loras[-1].sha256) == 64


async def test_the_server_refuses_model_lora_under_require_signature(
    tmp_path: Path, base: Path, adapter: Path, team_key: Path
) -> None:
    signed = pack_checkpoint(
        tmp_path / "ckpt", base, name="acme", version="1", sign_key=team_key
    ).directory
    settings, problems = parse_settings(
        {
            "model": {
                "path": str(signed),
                "lora": str(adapter),
                "requireSignature": True,
                "trustedKeys": [f"{team_key}.pub"],
            }
        }
    )
    assert problems == []
    reports: list[str] = []
    made: list[BackendSettings] = []

    def factory(backend_settings: BackendSettings) -> FakeBackend:
        made.append(backend_settings)
        return FakeBackend()

    engine = Engine(settings, root=None, report=lambda k, m: reports.append(m), factory=factory)
    await engine.start()
    assert engine.status.state == "error"
    assert "carries no signature" in reports[0] and made == []
    engine.close()


def swap(path: Path, replacement: Path) -> None:
    """Replace ``path`` the way an attacker or a careless copy would: a rename over it."""
    os.replace(replacement, path)


def test_a_file_swapped_after_verification_is_refused_when_the_worker_restarts(
    tmp_path: Path, gemma_path: Path
) -> None:
    gemma = read_gguf(gemma_path)
    team = write_lora(tmp_path / "team.gguf", gemma, magnitude=0.1)
    directory = pack_checkpoint(
        tmp_path / "ckpt", gemma_path, name="acme", version="1", adapters=[(team, 1.0)], link=False
    ).directory
    resolved = resolve_model(str(directory))
    backend = create_backend(
        BackendSettings(resolved=resolved, n_ctx=256, n_threads=2, snapshot_mb=0)
    )
    assert isinstance(backend, LlamaCppBackend)
    try:
        backend.complete(CompletionRequest(prompt=("def f(",), max_tokens=2)).text()
        swap(directory / "team.gguf", write_lora(tmp_path / "other.gguf", gemma, seed=7))
        pid = backend.worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # the worker dies; the next request starts another
        assert backend._worker is not None
        backend._worker.process.wait(timeout=10)
        with pytest.raises(CheckpointError, match="changed since it was verified") as caught:
            backend.complete(CompletionRequest(prompt=("def f(",), max_tokens=2)).text()
        assert caught.value.file == str(directory / "team.gguf")
        assert backend.worker_pid is None  # no new worker ever opened the swapped file
    finally:
        backend.close()


def test_the_embedded_base_and_checkpoint_files_are_all_pinned(
    tmp_path: Path, base: Path, adapter: Path
) -> None:
    directory = pack_checkpoint(
        tmp_path / "ckpt", base, name="acme", version="1", adapters=[(adapter, 0.5)]
    ).directory
    resolved = resolve_model(str(directory))
    pins = dict(resolved.pins())
    assert set(pins) == {directory / "base.gguf", directory / adapter.name}
    assert resolved.describe()["verified"] is True
    # A bare GGUF is loaded unverified: nothing to pin, nothing checked.
    assert resolve_model(str(base)).pins() == ()


def test_the_embedded_base_is_not_hashed_again_for_its_pin(
    tmp_path: Path, base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its package's check already verified it: the check before each load is a stat."""
    import model.checkpoints.verification as verification
    from model.checkpoints.verification import check_pinned
    from model.runtime.default_model import sha256_file

    monkeypatch.setattr(verification, "ensure_default_model", lambda: base)
    monkeypatch.setattr(verification, "embedded_sha256", lambda: sha256_file(base))
    cache = HashCache(tmp_path / "h.json")
    resolved = resolve_model("base", cache=cache)
    check_pinned(resolved.pins(), cache)
    assert resolved.pins() == ((base, sha256_file(base)),) and cache.hashed == 0
