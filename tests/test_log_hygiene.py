"""Raw model output and buffer text never reach the log above DEBUG: a log file is shared in bug
reports, and both can hold secrets (an API key typed in the buffer, the model repeating it)."""

from __future__ import annotations

import logging

import pytest

from lsp.completions import CompletionService
from lsp.engine import Engine
from lsp.pipeline import Cursor
from lsp.settings import parse_settings
from model.fake import FakeBackend

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
