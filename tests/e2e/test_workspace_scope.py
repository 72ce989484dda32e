"""Documents outside the workspace folders get no completions, code actions or context, however
the URI dresses the path up (``lsp.server.scope``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.test_protocol import RawClient, alive, raw  # noqa: F401  (raw: a fixture)

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(300)]

TEXT = "import json\n\n\ndef load(path):\n    return 1\n"


def hostile_uris(root: Path) -> dict[str, str]:
    """URIs that name a file outside ``root`` (which holds app.py) in different disguises."""
    outside = root.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "app.py").write_text(TEXT)
    (root / "link").symlink_to(outside, target_is_directory=True)
    base = root.as_uri()
    return {
        "dot-dot": f"{base}/../outside/app.py",
        "encoded dots": f"{base}/%2e%2e/outside/app.py",
        "encoded dots and slash": f"{base}/%2E%2E%2Foutside%2Fapp.py",
        "other host": f"file://fileserver{root.as_posix()}/app.py",
        "case variant": f"{root.parent.as_uri()}/{root.name.upper()}/app.py",
        "symlink out": f"{base}/link/app.py",
        "not a file": "https://example.com/app.py",
    }


async def open_doc(client: RawClient, uri: str) -> None:
    await client.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": TEXT}},
    )


async def actions(client: RawClient, msg_id: str, uri: str) -> list[object]:
    answer = await client.call(
        msg_id,
        "textDocument/codeAction",
        {
            "textDocument": {"uri": uri},
            "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 11}},
            "context": {"diagnostics": []},
        },
    )
    result = answer.get("result")
    assert isinstance(result, list), answer
    return result


async def test_documents_outside_the_workspace_are_refused(
    raw: RawClient,  # noqa: F811
    tmp_path: Path,
) -> None:
    inside = (raw.workspace / "app.py").as_uri()
    await open_doc(raw, inside)
    assert await actions(raw, "inside", inside), "the unused import has ruff's fix"

    hostile = hostile_uris(raw.workspace)
    for name, uri in hostile.items():
        await open_doc(raw, uri)
        assert await actions(raw, f"act {name}", uri) == [], name
        answer = await raw.call(
            f"inline {name}",
            "textDocument/inlineCompletion",
            {
                "textDocument": {"uri": uri},
                "position": {"line": 4, "character": 12},
                "context": {"triggerKind": 1},
            },
        )
        assert answer.get("result") in ([], {"items": []}), (name, answer)
    await alive(raw, "after")
    log = (tmp_path / "server.log").read_text(encoding="utf-8", errors="replace")
    for name, uri in hostile.items():
        assert f"refusing {uri}" in log, name
    assert f"refusing {inside}" not in log


@pytest.mark.skipif(os.name != "posix", reason="POSIX paths")
async def test_scope_rules() -> None:
    from lsp.server.scope import refusal

    root = Path("/srv/work/repo")
    assert refusal("file:///srv/work/repo/a/b.py", [root]) is None
    assert refusal("file://localhost/srv/work/repo/a.py", [root]) is None
    assert refusal("untitled:Untitled-1", [root]) is None
    assert refusal("file:///srv/work/repo/../other/a.py", [root]) is not None
    assert refusal("file:///srv/work/repo2/a.py", [root]) is not None
    assert refusal("file:///srv/work/other/a.py", [root, Path("/srv/work/other")]) is None
    assert refusal("file:///srv/work/repo/a.py", []) is None  # no folder: local files served
    assert refusal("file://host/srv/work/repo/a.py", []) is not None
