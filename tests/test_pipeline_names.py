"""The pipeline with a fake backend: legal names sent behind the lever, token log-probabilities
carried from the generation that produced the shown text."""

from __future__ import annotations

from pathlib import Path

from lint_bridge.api import CheckSettings
from lint_bridge.verify import Verifier
from lsp.core.levers import default_of
from lsp.core.pipeline import CompletionPipeline, Cursor, PipelineSettings
from model.runtime.api import CompletionRequest, TokenLogprobs
from model.runtime.fake import FakeBackend

SURE = TokenLogprobs(mean=-0.1, minimum=-0.3, first=-0.2, count=3)
UNSURE = TokenLogprobs(mean=-2.5, minimum=-6.0, first=-4.0, count=5)


def at(tmp_path: Path, marked: str) -> Cursor:
    return Cursor(
        path="app.py",
        language="python",
        text=marked.replace("|", ""),
        offset=marked.index("|"),
        abs_path=tmp_path / "app.py",
    )


def pipeline(
    tmp_path: Path,
    backend: FakeBackend,
    *,
    complete_names: bool = False,
    suffix_names: bool = False,
) -> CompletionPipeline:
    verifier = Verifier(CheckSettings(ruff=False), workspace_root=tmp_path)
    settings = PipelineSettings(
        candidates=2, complete_names=complete_names, suffix_names=suffix_names
    )
    return CompletionPipeline(backend, settings, verifier=verifier)


def test_the_lever_is_off_until_measured() -> None:
    assert default_of("complete_names") is False
    assert PipelineSettings().complete_names is False


def test_with_the_lever_the_request_carries_the_legal_names(tmp_path: Path) -> None:
    backend = FakeBackend(respond=lambda prompt: "getcwd()")
    result = pipeline(tmp_path, backend, complete_names=True).complete(
        at(tmp_path, "import os\n\nprint(os.|)")
    )
    assert result.text == "getcwd()"
    names = backend.requests[0].names
    assert names is not None and {"getcwd", "path", "environ"} <= set(names.names)
    assert names.typed == "" and names.lead == ""


def test_a_healed_blank_is_the_lead_and_the_typed_part_filters(tmp_path: Path) -> None:
    backend = FakeBackend(respond=lambda prompt: " path")
    pipeline(tmp_path, backend, complete_names=True).complete(at(tmp_path, "from os import |"))
    names = backend.requests[0].names
    assert names is not None and names.lead == " " and "path" in names.names
    typed = FakeBackend(respond=lambda prompt: "th")
    pipeline(tmp_path, typed, complete_names=True).complete(at(tmp_path, "import os\nos.pa|"))
    sent = typed.requests[0].names
    assert sent is not None and sent.typed == "pa"
    assert all(name.startswith("pa") for name in sent.names) and "path" in sent.names


def test_without_the_lever_or_where_the_set_is_open_no_names_are_sent(tmp_path: Path) -> None:
    backend = FakeBackend(respond=lambda prompt: "getcwd()")
    off = pipeline(tmp_path, backend).complete(at(tmp_path, "import os\n\nprint(os.|)"))
    assert off.text == "getcwd()" and backend.requests[0].names is None
    instance = FakeBackend(respond=lambda prompt: "x")
    pipeline(tmp_path, instance, complete_names=True).complete(
        at(tmp_path, "class A:\n    def f(self):\n        return self.|")
    )
    assert instance.requests[0].names is None


def test_with_the_lever_the_request_carries_the_qualifiers_and_the_line(tmp_path: Path) -> None:
    backend = FakeBackend(respond=lambda prompt: "os.getcwd()")
    pipeline(tmp_path, backend, complete_names=True).complete(
        at(tmp_path, "import os\n\n\ndef f():\n    x = |")
    )
    for request in backend.requests:
        known = request.qualified
        assert known is not None and known.line == "    x ="  # the healed blank left out
        assert "getcwd" in dict(known.attributes)["os"] and "os" in known.private
    off = FakeBackend(respond=lambda prompt: "os.getcwd()")
    pipeline(tmp_path, off).complete(at(tmp_path, "import os\n\n\ndef f():\n    x = |"))
    assert all(request.qualified is None for request in off.requests)


def test_the_shown_text_carries_its_own_generations_logprobs(tmp_path: Path) -> None:
    # The greedy candidate names something unknown and is rejected; the sampled one shows.
    answers = iter(["no_such_name_here", "len(values)"])
    scores = iter([UNSURE, SURE])
    backend = FakeBackend(respond=lambda prompt: next(answers), logprobs=lambda p: next(scores))
    result = pipeline(tmp_path, backend).complete(at(tmp_path, "values = [1]\ncount = |"))
    assert result.text == "len(values)" and result.candidates == 2
    assert result.logprobs == SURE
    assert result.as_json()["logprobs"] == {
        "mean": -0.1,
        "minimum": -0.3,
        "first": -0.2,
        "count": 3,
    }


def test_a_held_candidate_keeps_its_logprobs_when_shown_after_later_ones(tmp_path: Path) -> None:
    # The code below reads ``total``: the first candidate does not define it and is held,
    # the later ones are no better; the held one is shown, with its own logprobs.
    answers = iter(["print(1)", "print(2)", "print(3)", "print(4)"])
    scores = iter([SURE, UNSURE, UNSURE, UNSURE])
    backend = FakeBackend(respond=lambda prompt: next(answers), logprobs=lambda p: next(scores))
    result = pipeline(tmp_path, backend, suffix_names=True).complete(
        at(tmp_path, "def f():\n    |\n    return total\n")
    )
    assert result.text == "print(1)" and result.candidates > 1
    assert result.logprobs == SURE


def test_no_logprobs_when_the_backend_reports_none_or_nothing_is_shown(tmp_path: Path) -> None:
    silent = FakeBackend(respond=lambda prompt: "len(values)")
    shown = pipeline(tmp_path, silent).complete(at(tmp_path, "values = [1]\ncount = |"))
    assert shown.text == "len(values)" and shown.logprobs is None
    rejected = FakeBackend(respond=lambda prompt: "no_such_name_here", logprobs=lambda p: SURE)
    nothing = pipeline(tmp_path, rejected).complete(at(tmp_path, "values = [1]\ncount = |"))
    assert nothing.text is None and nothing.logprobs is None


def test_the_fake_backend_reports_logprobs_only_for_a_generation_with_tokens() -> None:
    backend = FakeBackend(respond=lambda prompt: "", logprobs=lambda p: SURE)
    empty = backend.complete(CompletionRequest(prompt=("x",)))
    empty.text()
    assert empty.usage.logprobs is None
    backend.respond = lambda prompt: "y = 1"
    some = backend.complete(CompletionRequest(prompt=("x",)))
    some.text()
    assert some.usage.logprobs == SURE
