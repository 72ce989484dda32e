"""The completion pipeline with a fake backend: prompt choice, cleaning, cancel, context."""

from __future__ import annotations

from lsp.core.pipeline import CompletionPipeline, Cursor
from model.runtime.api import CancelToken, ModelInfo, SpecialToken
from model.runtime.fake import FakeBackend
from model.runtime.prompt import Snippet

CODE = "import json\n\n\ndef load_config(path):\n    with open(path) as f:"
QWEN = frozenset(
    {
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
        "<|file_sep|>",
        "<|repo_name|>",
        "<|endoftext|>",
    }
)


def cursor(text: str = CODE, offset: int | None = None) -> Cursor:
    return Cursor(
        path="shop/config.py",
        language="python",
        text=text,
        offset=len(text) if offset is None else offset,
    )


def test_prefix_only_model_gets_a_plain_prompt_and_a_cleaned_block() -> None:
    backend = FakeBackend(
        respond=lambda p: "\n        return json.load(f)\n\n\ndef other():\n    pass"
    )
    result = CompletionPipeline(backend).complete(cursor())
    assert result.mode == "prefix"
    assert result.text == "\n        return json.load(f)"
    prompt = backend.requests[0].prompt
    assert not any(isinstance(part, SpecialToken) for part in prompt)
    assert "def load_config(path):" in "".join(str(p) for p in prompt)


def test_fim_model_gets_fim_markers_and_the_suffix() -> None:
    backend = FakeBackend(
        respond=lambda p: "json.load(f)",
        info_value=ModelInfo(name="qwen", special_tokens=QWEN),
    )
    text = "import json\n\ndef load(path):\n    with open(path) as f:\n        return \n\nx = 1\n"
    offset = text.index("return ") + len("return ")
    result = CompletionPipeline(backend).complete(cursor(text, offset))
    assert result.mode == "fim"
    parts = backend.requests[0].prompt
    assert SpecialToken("<|fim_middle|>") in parts
    assert result.text == "json.load(f)"


def test_snippets_reach_the_prompt_and_are_reported() -> None:
    backend = FakeBackend(respond=lambda p: "\n        return json.load(f)")
    snippet = Snippet(path="shop/cart.py", text="class Cart:\n    pass\n")
    result = CompletionPipeline(backend).complete(cursor(), snippets=[snippet])
    assert result.snippets_used == ("shop/cart.py",)
    assert "class Cart:" in "".join(str(p) for p in backend.requests[0].prompt)


def test_cancelled_generation_returns_no_suggestion() -> None:
    cancel = CancelToken()
    cancel.cancel()
    backend = FakeBackend(respond=lambda p: "\n        return json.load(f)")
    result = CompletionPipeline(backend).complete(cursor(), cancel=cancel)
    assert result.text is None
    assert result.finish_reason == "cancelled"


def test_whitespace_only_output_is_no_suggestion() -> None:
    backend = FakeBackend(respond=lambda p: "\n   \n")
    assert CompletionPipeline(backend).complete(cursor()).text is None


def test_json_shape() -> None:
    result = CompletionPipeline(FakeBackend(respond=lambda p: "\n        return 1")).complete(
        cursor()
    )
    assert set(result.as_json()) >= {
        "text",
        "model",
        "latency_ms",
        "prompt_tokens",
        "completion_tokens",
    }


def test_verification_rejects_a_hallucination_and_takes_the_next_candidate(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from lint_bridge.verify import Verifier

    answers = iter(["\n        return json.load_file(f)", "\n        return json.load(f)"])
    backend = FakeBackend(respond=lambda p: next(answers))
    source = tmp_path / "config.py"
    source.write_text(CODE)
    pipeline = CompletionPipeline(backend, verifier=Verifier(workspace_root=tmp_path))
    result = pipeline.complete(
        Cursor(path="config.py", language="python", text=CODE, offset=len(CODE), abs_path=source)
    )
    assert result.text == "\n        return json.load(f)"
    assert result.verdict == "accept" and result.candidates == 2
    assert result.rejected_reasons == ("unknown-symbol:json.load_file",)
    assert backend.requests[1].temperature > 0  # the second candidate is sampled


def test_every_candidate_rejected_gives_no_suggestion(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from lint_bridge.verify import Verifier

    backend = FakeBackend(respond=lambda p: "\n        return json.load_file(f)")
    source = tmp_path / "config.py"
    source.write_text(CODE)
    pipeline = CompletionPipeline(backend, verifier=Verifier(workspace_root=tmp_path))
    result = pipeline.complete(
        Cursor(path="config.py", language="python", text=CODE, offset=len(CODE), abs_path=source)
    )
    assert result.text is None and result.verdict == "reject" and result.candidates == 3


def test_balanced_cuts_end_where_brackets_close() -> None:
    from lsp.core.pipeline import balanced_cuts

    assert balanced_cuts("json.load(f") == ["json.load", "json"]
    assert balanced_cuts("json.load(f) or default") == [
        "json.load(f) or default",
        "json.load(f)",
        "json.load",
    ]
    assert balanced_cuts('foo(a).bar("x') == ["foo(a).bar", "foo(a)", "foo"]
    assert balanced_cuts("x)") == ["x"]  # never past a bracket the buffer opened
    assert balanced_cuts("\n    return cart.total(") == [
        "\n    return cart.total",
        "\n    return cart",
        "\n    return",  # a keyword that may end a statement
    ]
    assert balanced_cuts("x = a if b") == ["x = a if b", "x = a", "x"]  # never ends at "if"


def test_past_the_budget_a_line_is_never_cut_where_it_happened_to_parse(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from lint_bridge.api import CheckSettings
    from lint_bridge.verify import Verifier
    from lsp.core.pipeline import PipelineSettings

    text = "import json\n\n\ndef load(path):\n    with open(path) as f:\n        config = "
    backend = FakeBackend(respond=lambda p: "json.load( f ) or {}\n", token_delay=0.3)
    pipeline = CompletionPipeline(
        backend,
        PipelineSettings(time_budget_s=0.5, candidates=1),
        verifier=Verifier(CheckSettings(ruff=False), workspace_root=tmp_path),
    )
    budgeted = pipeline.complete(Cursor("a.py", "python", text, len(text)))
    assert budgeted.text == "json.load( f ) or {}"  # not "json.load", which also parses
    assert budgeted.finish_reason != "deadline"


def test_past_the_budget_the_first_whole_lines_of_a_block_are_shown(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from lint_bridge.api import CheckSettings
    from lint_bridge.verify import Verifier
    from lsp.core.pipeline import PipelineSettings

    text = "def total(items):\n    "
    body = "result = 0\n    for item in items:\n        result += item\n    return result\n"
    backend = FakeBackend(respond=lambda p: body, token_delay=0.05)
    pipeline = CompletionPipeline(
        backend,
        PipelineSettings(time_budget_s=0.01, candidates=1),
        verifier=Verifier(CheckSettings(ruff=False), workspace_root=tmp_path),
    )
    result = pipeline.complete(Cursor("a.py", "python", text, len(text)))
    assert result.finish_reason == "deadline"  # stopped early, at a line's end
    assert result.text is not None and result.text.startswith("result = 0")
    assert not result.text.endswith(("resu", "for", "for item"))  # whole lines only
    assert result.text in body and body.startswith(result.text + "\n")
    request = backend.requests[0]
    assert request.cancel is not None and request.cancel.cancelled


def test_the_old_budget_cut_partial_lines(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """With ``whole_lines`` off (the budget before it), a generation cut by the budget
    shows its longest verified balanced form."""
    from lint_bridge.api import CheckSettings
    from lint_bridge.verify import Verifier
    from lsp.core.pipeline import PipelineSettings

    text = "import json\n\n\ndef load(path):\n    with open(path) as f:\n        config = "
    backend = FakeBackend(respond=lambda p: "json.load( f ) or {}\n", token_delay=0.3)
    pipeline = CompletionPipeline(
        backend,
        PipelineSettings(time_budget_s=0.5, candidates=1, whole_lines=False),
        verifier=Verifier(CheckSettings(ruff=False), workspace_root=tmp_path),
    )
    budgeted = pipeline.complete(Cursor("a.py", "python", text, len(text)))
    assert budgeted.finish_reason == "deadline"
    assert budgeted.text == "json.load"  # "json.load(" was cut; its balanced form passes
    assert budgeted.verdict == "accept"
    whole = pipeline.complete(Cursor("a.py", "python", text, len(text)), budget=False)
    assert whole.text == "json.load( f ) or {}"


def test_at_the_end_of_a_finished_line_the_next_line_is_suggested() -> None:
    text = "def total(items):\n    result = 0"
    prompts: list[str] = []

    def respond(prompt: str) -> str:
        prompts.append(prompt)
        return "\n    for x in items:" if prompt.endswith("= 0") else "    for item in items:\n"

    result = CompletionPipeline(FakeBackend(respond=respond)).complete(
        Cursor("a.py", "python", text, len(text))
    )
    assert result.text == "\n    for item in items:"
    assert len(prompts) == 2  # the empty greedy answer is not retried by sampling
    assert prompts[1].endswith("result = 0\n")


def test_mid_line_an_empty_answer_stays_empty() -> None:
    text = "x = compute()"
    backend = FakeBackend(respond=lambda p: "\nprint(x)")
    result = CompletionPipeline(backend).complete(Cursor("a.py", "python", text, len(text) - 1))
    assert result.text is None and len(backend.requests) == 1


def test_past_the_budget_generation_goes_on_until_a_partial_verifies(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from lint_bridge.api import CheckSettings
    from lint_bridge.verify import Verifier
    from lsp.core.pipeline import PipelineSettings

    text = "import json\n\n\ndef load(f):\n    config = "
    backend = FakeBackend(respond=lambda p: "(json .load( f )) + 1 + 2 + 3\n", token_delay=0.05)
    pipeline = CompletionPipeline(
        backend,
        PipelineSettings(time_budget_s=0.01, max_wait_s=5.0, candidates=1, whole_lines=False),
        verifier=Verifier(CheckSettings(ruff=False), workspace_root=tmp_path),
    )
    result = pipeline.complete(Cursor("a.py", "python", text, len(text)))
    # "(json" and "(json .load(" have no balanced form; "(json .load( f ))" is the first.
    assert result.text == "(json .load( f ))"
    assert result.verdict == "accept"
    request = backend.requests[0]
    assert request.cancel is not None and request.cancel.cancelled  # generation was stopped
