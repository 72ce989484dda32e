"""Raw model output and buffer text never reach the log above DEBUG: a log file is shared in bug
reports, and both can hold secrets (an API key typed in the buffer, the model repeating it)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from lsp.core.pipeline import Cursor
from lsp.core.settings import parse_settings
from lsp.server.completions import CompletionService
from lsp.server.engine import Engine
from model.runtime.fake import FakeBackend

BUFFER_SECRET = "hunter2-in-the-buffer"
MODEL_SECRET = "model-says-sk-live-0000"
CODE = f'TOKEN = "{BUFFER_SECRET}"\n\n\ndef header():\n    return '


def service(answer: str, verify: dict[str, bool]) -> CompletionService:
    settings, problems = parse_settings({"verify": verify, "logLevel": "debug"})
    assert problems == []
    backend = FakeBackend(respond=lambda prompt: answer)
    engine = Engine(settings, root=None, report=lambda k, m: None, factory=lambda s: backend)
    return CompletionService(engine, debounce_s=0)


@pytest.mark.parametrize(
    "answer",
    [
        f'"{MODEL_SECRET}"\n',  # shown
        f"{MODEL_SECRET}(\n",  # rejected: does not parse
        f"undefined_{MODEL_SECRET.replace('-', '_')}\n",  # rejected: unknown name
    ],
)
async def test_no_model_output_or_buffer_text_above_debug(
    caplog: pytest.LogCaptureFixture, answer: str
) -> None:
    completions = service(answer, {"ruff": True, "symbols": True, "syntax": True})
    await completions.engine.start()
    cursor = Cursor(path="auth.py", language="python", text=CODE, offset=len(CODE))
    with caplog.at_level(logging.DEBUG):
        await completions.suggest("doc", 1, cursor, lambda v: True, invoked=True)
    completions.engine.close()
    above_debug = "\n".join(r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG)
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert "completion #" in above_debug  # the request itself is logged
    secret = MODEL_SECRET.replace("-", "_") if "undefined" in answer else MODEL_SECRET
    assert secret not in above_debug
    assert BUFFER_SECRET not in above_debug
    assert secret in everything  # at DEBUG it is there, for whoever asks for it


def test_a_rejected_fix_logs_no_model_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from lint_bridge.api import Document
    from lint_bridge.ruff import find_ruff
    from lint_bridge.verify import Verifier
    from lsp.core.fixing import FixPipeline, FixSettings

    if find_ruff() is None:
        pytest.skip("ruff is not installed")
    (tmp_path / "ruff.toml").write_text('[lint]\nselect = ["E", "F"]\n')
    text = (
        "def load(path):\n    try:\n        return open(path).read()\n"
        "    except:\n        return None\n"
    )
    verifier = Verifier(workspace_root=tmp_path)
    doc = Document(tmp_path / "m.py", text, "python")
    found = asyncio.run(verifier.ruff.diagnostics(text, doc.path)) or []
    target = next(d for d in found if d.code == "E722")
    secret = MODEL_SECRET.replace("-", "_")
    backend = FakeBackend(respond=lambda prompt: f"except {secret}:\n        return None\n")
    with caplog.at_level(logging.DEBUG):
        fix = FixPipeline(backend, verifier, FixSettings(candidates=2)).propose(doc, target)
    assert fix is None
    above_debug = "\n".join(r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG)
    assert "no verified fix" in above_debug
    assert secret not in above_debug
    assert secret in "\n".join(r.getMessage() for r in caplog.records)
