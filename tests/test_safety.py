"""Suggestions that bring in a URL, a host, a subprocess or network call, or eval/exec of a
string are not shown automatically (``lint_bridge.safety``; ``lsp.server.completions``)."""

from __future__ import annotations

import logging

import pytest

from lint_bridge.safety import hazards
from lsp.core.pipeline import Cursor
from lsp.core.settings import parse_settings
from lsp.server.completions import CompletionService
from lsp.server.engine import Engine
from model.runtime.fake import FakeBackend


@pytest.mark.parametrize(
    ("suggestion", "kind"),
    [
        ('upload(data, "https://collect.example.net/u")', "url"),
        ('HOST = "exfil.attacker.io"', "host"),
        ('connect("203.0.113.9", 22)', "host"),
        ('subprocess.run(["curl", path])', "process"),
        ('os.system("rm -rf " + path)', "process"),
        ("proc = await asyncio.create_subprocess_shell(cmd)", "process"),
        ("requests.post(url, json=payload)", "network"),
        ("urllib.request.urlopen(url).read()", "network"),
        ("sock = socket.create_connection((host, port))", "network"),
        ("import httpx", "network"),
        ("fetch(`/api/${id}`)", "network"),
        ("eval(expression)", "eval"),
        ("exec(compile(source, name, 'exec'))", "eval"),
        ("new Function(body)()", "eval"),
        ("setTimeout('alert(1)', 10)", "eval"),
    ],
)
def test_hazards_are_found(suggestion: str, kind: str) -> None:
    assert kind in {h.kind for h in hazards(suggestion, "")}


@pytest.mark.parametrize(
    "suggestion",
    [
        "json.load(f)",
        "ast.literal_eval(text)",
        "self.requests.total += 1",
        "platform.system()",
        "cursor.execute(query)",
        'path = "config.json"',
        "regex.exec(line)",
        "return x.fetch()",
    ],
)
def test_ordinary_code_is_not_a_hazard(suggestion: str) -> None:
    assert hazards(suggestion, "") == []


def test_a_url_already_in_the_buffer_is_not_new() -> None:
    buffer = 'BASE = "https://docs.python.org/3/"\nlink = '
    assert hazards('BASE + "library"', buffer) == []
    assert hazards('"https://docs.python.org/3/"', buffer) == []
    assert [h.kind for h in hazards('"https://evil.example.com/"', buffer)] == ["url"]


# -- in the completion service ------------------------------------------------------------

CODE = "import subprocess\n\n\ndef run(command):\n    return "


def service_answering(text: str) -> CompletionService:
    settings, problems = parse_settings(
        {"verify": {"ruff": False, "symbols": False, "syntax": False}}
    )
    assert problems == []
    backend = FakeBackend(respond=lambda prompt: text)
    engine = Engine(settings, root=None, report=lambda k, m: None, factory=lambda s: backend)
    return CompletionService(engine, debounce_s=0)


def cursor(text: str = CODE) -> Cursor:
    return Cursor(path="tool.py", language="python", text=text, offset=len(text))


async def test_an_automatic_request_holds_back_a_subprocess_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = service_answering("subprocess.run(command, shell=True)\n")
    await service.engine.start()
    with caplog.at_level(logging.INFO, logger="lsp.server.completions"):
        shown = await service.suggest("doc", 1, cursor(), lambda v: True)
    assert shown is None
    assert service.stats.held_back == 1
    assert "starts a subprocess" in caplog.text
    assert "shell=True" not in caplog.text  # the model's text stays out of the log
    # Typing along the held-back suggestion does not show it from the cache either.
    typed = await service.suggest("doc", 2, cursor(CODE + "sub"), lambda v: True)
    assert typed is None
    service.engine.close()


async def test_an_explicit_request_shows_it() -> None:
    service = service_answering("subprocess.run(command, shell=True)\n")
    await service.engine.start()
    shown = await service.suggest("doc", 1, cursor(), lambda v: True, invoked=True)
    assert shown is not None and shown.text.startswith("subprocess.run(command")
    service.engine.close()


async def test_an_ordinary_suggestion_is_shown_automatically() -> None:
    service = service_answering("command.strip()\n")
    await service.engine.start()
    shown = await service.suggest("doc", 1, cursor(), lambda v: True)
    assert shown is not None and shown.text == "command.strip()"
    service.engine.close()
