"""Files changed outside the editor reach the index: re-scans on watched-file events (settled)
and periodically; a branch switch leaves no chunk of a deleted file in the context."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from lsp.core.pipeline import Cursor
from lsp.core.settings import IndexSettingsSchema
from lsp.server.indexing import IndexService
from lsp.server.watching import Rescans

BILLING = "def compute_invoice_total_zeta(lines):\n    return sum(line.price for line in lines)\n"
MAIN = "from billing import compute_invoice_total_zeta\n\ntotal = compute_invoice_total_zeta("


def git(root: Path, *args: str) -> None:
    base = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run([*base, *args], check=True, capture_output=True)


def two_branches(root: Path) -> Path:
    """``main`` has billing.py; ``slim`` deleted it. The work tree is on ``main``."""
    root.mkdir()
    (root / "main.py").write_text(MAIN)
    (root / "billing.py").write_text(BILLING)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "both")
    git(root, "checkout", "-q", "-b", "slim")
    git(root, "rm", "-q", "billing.py")
    git(root, "commit", "-qm", "slim")
    git(root, "checkout", "-q", "main")
    return root


def context_paths(service: IndexService, offset_shift: int = 0) -> set[str]:
    cursor = Cursor("main.py", "python", MAIN, len(MAIN) - offset_shift)
    return {snippet.path for snippet in service.context(cursor)}


async def test_a_branch_switch_leaves_no_deleted_chunk(tmp_path: Path) -> None:
    root = two_branches(tmp_path / "repo")
    settings = IndexSettingsSchema(location=str(tmp_path / "index"), embeddings=False)
    service = IndexService(root, settings, report=lambda key, message: None)
    try:
        await service.build(lambda stage, done, total: None)
        assert "billing.py" in context_paths(service)
        git(root, "checkout", "-q", "slim")
        rescans = Rescans(lambda: service, lambda coro: asyncio.ensure_future(coro), settle_s=0.01)
        for _ in range(3):  # a burst of events: one re-scan
            rescans.changed(1)
        for _ in range(500):
            await asyncio.sleep(0.01)
            if "billing.py" not in service.index.store.file_states():  # type: ignore[union-attr]
                break
        assert "billing.py" not in context_paths(service)
        assert rescans.events == 3
    finally:
        service.close()


async def test_the_periodic_rescan_catches_what_no_event_reported(tmp_path: Path) -> None:
    root = two_branches(tmp_path / "repo")
    settings = IndexSettingsSchema(location=str(tmp_path / "index"), embeddings=False)
    service = IndexService(root, settings, report=lambda key, message: None)
    try:
        await service.build(lambda stage, done, total: None)
        assert "billing.py" in context_paths(service)
        (root / "billing.py").unlink()  # deleted, and the editor said nothing
        rescans = Rescans(lambda: service, lambda coro: None, every_s=0.01)
        task = asyncio.ensure_future(rescans.periodically())
        for _ in range(500):
            await asyncio.sleep(0.01)
            if "billing.py" not in service.index.store.file_states():  # type: ignore[union-attr]
                break
        task.cancel()
        assert "billing.py" not in context_paths(service)
    finally:
        service.close()


@pytest.mark.parametrize("state", ["off", "error"])
async def test_no_rescan_without_a_usable_index(tmp_path: Path, state: str) -> None:
    settings = IndexSettingsSchema(location=str(tmp_path / "index"), embeddings=False)
    service = IndexService(tmp_path, settings, report=lambda key, message: None)
    service.state = state  # type: ignore[assignment]
    await service.rescan()  # nothing to do, nothing raised
    assert service.index is None
    service.close()
