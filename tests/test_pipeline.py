"""The completion pipeline with a fake backend: prompt choice, cleaning, cancel, context."""

from __future__ import annotations

from lsp.pipeline import CompletionPipeline, Cursor
from model.api import CancelToken, ModelInfo, SpecialToken
from model.fake import FakeBackend
from model.prompt import Snippet

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
