"""A team checkpoint served over LSP: verified and signed, shown in ``apprentice.status``; a
switch to a tampered checkpoint is refused with one message and the first one keeps serving."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types

from model.checkpoints.pack import pack_checkpoint
from model.checkpoints.signing import generate_keypair
from model.runtime.gguf import read_gguf
from tests.e2e.conftest import Session, end_of
from tests.lora_gguf import write_lora

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(600)]

CONFIG = "shop/config.py"


def team_checkpoint(tmp_path: Path, gemma_path: Path, version: str, key: Path) -> Path:
    """The embedded model plus a faint adapter, signed by the team."""
    lora = write_lora(tmp_path / f"team-{version}.gguf", read_gguf(gemma_path), magnitude=0.001)
    return pack_checkpoint(
        tmp_path / f"acme-{version}",
        gemma_path,
        name="acme",
        version=version,
        adapters=[(lora, 1.0)],
        sign_key=key,
        signer="ACME ML",
    ).directory


async def suggestion(session: Session) -> str:
    text = (session.workspace / CONFIG).read_text(encoding="utf-8")
    uri = session.uri(CONFIG)
    if uri not in session.versions:
        session.open(CONFIG)
    items = await session.inline(uri, end_of(text))
    assert len(items) == 1, items
    assert isinstance(items[0].insert_text, str)
    return items[0].insert_text


async def test_serving_a_checkpoint_and_refusing_a_tampered_one(
    session: Session, tmp_path: Path, gemma_path: Path
) -> None:
    key = tmp_path / "team.key"
    generate_keypair(key, "ACME ML")
    good = team_checkpoint(tmp_path, gemma_path, "1.0", key)
    policy = {"requireSignature": True, "trustedKeys": [f"{key}.pub"]}
    await session.initialize({"model": {"path": str(good), **policy}})
    status = await session.wait_ready()
    model = status["model"]
    assert model["name"] == "acme@1.0"
    checkpoint = model["checkpoint"]
    assert checkpoint["verified"] is True and checkpoint["trusted"] is True
    assert (checkpoint["version"], checkpoint["signer"]) == ("1.0", "ACME ML")
    assert "json.load" in await suggestion(session)

    tampered = team_checkpoint(tmp_path, gemma_path, "2.0", key)
    adapter = tampered / "team-2.0.gguf"
    data = bytearray(adapter.read_bytes())
    data[-8:] = b"\x7f" * 8  # an edit after signing: same size, other bytes
    adapter.write_bytes(bytes(data))
    session.client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(
            settings={"apprentice": session.options({"model": {"path": str(tampered), **policy}})}
        )
    )
    status = await session.wait_status(
        lambda s: s["model"].get("refused") is not None, "the switch to be refused"
    )
    assert status["model"]["state"] == "ready" and status["model"]["name"] == "acme@1.0"
    assert str(adapter) in status["model"]["refused"]
    await session.wait_until(lambda: bool(session.client.messages), "the error message")
    [message] = [m.message for m in session.client.messages]
    assert str(adapter) in message and "sha256 check failed" in message
    assert "acme@1.0 keeps serving" in message
    assert "json.load" in await suggestion(session)  # the first checkpoint still answers
    assert str(good) in status["backend"]
