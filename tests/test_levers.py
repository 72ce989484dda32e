"""The pipeline's quality levers: line-start completions, code over comments, names below."""

from __future__ import annotations

from dataclasses import replace

from lsprotocol import types

from lsp.core.linestart import line_start
from lsp.core.pipeline import CompletionPipeline, Cursor, PipelineSettings
from lsp.core.text.partials import comment_where_code_goes
from lsp.server.convert import completion_items, inline_items
from model.runtime.api import render_prompt
from model.runtime.fake import FakeBackend

IF_ELSE = "def sign(x):\n    if x >= 0:\n        return 1\n        \n"


def at(text: str, offset: int) -> Cursor:
    return Cursor(path="m.py", language="python", text=text, offset=offset)


def answers(*texts: str) -> FakeBackend:
    """A backend giving ``texts`` in turn (the last one from then on)."""
    calls: list[int] = []

    def respond(prompt: str) -> str:
        calls.append(1)
        return texts[min(len(calls), len(texts)) - 1]

    return FakeBackend(respond=respond)


def test_line_start_after_auto_indent_lets_the_model_write_the_indentation() -> None:
    offset = IF_ELSE.index("        \n") + 8
    view = line_start(at(IF_ELSE, offset))
    assert view is not None and not view.above
    assert view.cursor.text == "def sign(x):\n    if x >= 0:\n        return 1\n\n"
    assert view.mapped("    else:") == ("    else:", 8)  # a dedent: replace the indent
    assert view.mapped("        x += 1") == ("x += 1", 0)  # same level: plain insertion


def test_line_start_above_a_line_of_code() -> None:
    text = "def f(xs):\n    return total\n"
    view = line_start(at(text, text.index("    return")))
    assert view is not None and view.above
    assert view.cursor.text == "def f(xs):\n\n    return total\n"
    assert view.mapped("    total = sum(xs)") == ("    total = sum(xs)\n", 0)
    inside = line_start(at(text, text.index("return")))  # cursor after the indentation
    assert inside is not None and inside.above
    assert inside.mapped("    total = sum(xs)") == ("    total = sum(xs)\n    ", 4)


def test_no_line_start_where_code_precedes_the_cursor_or_at_an_empty_line_start() -> None:
    text = "x = 1\n\ny = \n"
    assert line_start(at(text, text.index("y = ") + 4)) is None
    assert line_start(at(text, text.index("\n\n") + 1)) is None


def test_pipeline_suggests_a_dedent_after_auto_indent() -> None:
    backend = answers("    else:")
    offset = IF_ELSE.index("        \n") + 8
    result = CompletionPipeline(backend).complete(at(IF_ELSE, offset))
    assert (result.text, result.replaced) == ("    else:", 8)
    # The model saw the line start, not the auto-indent.
    assert render_prompt(backend.requests[0].prompt).endswith("return 1\n")
    off = CompletionPipeline(backend, PipelineSettings(line_start=False))
    assert off.complete(at(IF_ELSE, offset)).replaced == 0


def test_pipeline_inserts_a_line_above_existing_code() -> None:
    text = "def f(xs):\n    return total\n"
    backend = answers("    total = sum(xs)")
    result = CompletionPipeline(backend).complete(at(text, text.index("    return")))
    assert (result.text, result.replaced) == ("    total = sum(xs)\n", 0)


def test_a_comment_is_not_offered_where_code_follows() -> None:
    text = "def total(xs):\n\n    return t\n"
    offset = text.index("\n\n") + 1
    settings = PipelineSettings(candidates=2)
    picked = CompletionPipeline(answers("    # add them up", "    t = sum(xs)"), settings)
    assert picked.complete(at(text, offset)).text == "    t = sum(xs)"
    lever_off = replace(settings, code_over_comment=False, suffix_names=False)
    plain = CompletionPipeline(answers("    # add them up", "    t = sum(xs)"), lever_off)
    assert plain.complete(at(text, offset)).text == "    # add them up"


def test_comments_stay_allowed_when_writing_one_or_at_the_end() -> None:
    body = "def f():\n    x = 1\n"
    assert comment_where_code_goes(at(body, body.index("    x")), "    # note")
    assert not comment_where_code_goes(at("# ", 2), "Copyright")
    assert not comment_where_code_goes(at("x = 1\n", 6), "# the end")
    writing = "def f():\n    # \n    x = 1\n"
    assert not comment_where_code_goes(at(writing, writing.index("# ") + 2), "explain x")


def test_a_candidate_defining_what_the_code_below_reads_is_preferred() -> None:
    text = "def uniq(xs):\n\n    for x in xs:\n        ret.add(x)\n    return ret\n"
    offset = text.index("\n\n") + 1
    settings = PipelineSettings(candidates=2, suffix_names=True)
    picked = CompletionPipeline(answers("    out = set()", "    ret = set()"), settings)
    assert picked.complete(at(text, offset)).text == "    ret = set()"
    # With the lever off the first candidate stands.
    off = CompletionPipeline(
        answers("    out = set()", "    ret = set()"), replace(settings, suffix_names=False)
    )
    assert off.complete(at(text, offset)).text == "    out = set()"
    # When no candidate defines it, the first one is still shown.
    neither = CompletionPipeline(answers("    out = set()", "    seen = set()"), settings)
    assert neither.complete(at(text, offset)).text == "    out = set()"


def test_the_editor_range_starts_before_the_cursor_by_the_replaced_characters() -> None:
    position = types.Position(line=3, character=8)
    item = inline_items("    else:", position, replaced=8).items[0]
    assert item.range is not None and item.range.start == types.Position(3, 0)
    assert item.range.end == position
    edit = completion_items("    else:", position, "", replaced=8).items[0].text_edit
    assert isinstance(edit, types.TextEdit) and edit.range.start.character == 0
    plain = inline_items("x", position).items[0]
    assert plain.range is not None and plain.range.start == position


def test_definitions_of_imported_but_unused_names_reach_the_context(tmp_path) -> None:
    """Whoever imported a name is about to use it: its definition goes into the prompt."""
    import subprocess

    from indexer.index import IndexSettings, RepositoryIndex
    from indexer.retrieval import Retriever

    repo = tmp_path / "shop"
    repo.mkdir()
    (repo / "store.py").write_text(
        "def load_inventory(path):\n    return open(path).read().split()\n"
    )
    body = "\n".join(f"    step_{i} = {i}" for i in range(40))
    app = f"from store import load_inventory\n\n\ndef restock(path):\n{body}\n    items = \n"
    (repo / "app.py").write_text(app)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    with RepositoryIndex(repo, IndexSettings(location=tmp_path / "index")) as index:
        index.update()
        retriever = Retriever(index)
        offset = app.index("items = ") + len("items = ")
        assert retriever.unused_imports("app.py", app) == ["load_inventory"]
        hinted = retriever.context_for("app.py", app, offset, semantic=False)
        assert any("def load_inventory" in s.text for s in hinted)
        plain = retriever.context_for("app.py", app, offset, semantic=False, unused_imports=False)
        assert not any(s.reason == "definition" for s in plain)
        used = app.replace("items = \n", "items = load_inventory(path)\n")
        assert retriever.unused_imports("app.py", used) == []


def test_token_healing_leaves_typed_spaces_out_of_the_prompt() -> None:
    from lsp.core.text.partials import trailing_blank, unheal

    assert trailing_blank("def f():\n    total ") == " "
    assert trailing_blank("def f():\n    ") == ""  # indentation is not healed
    assert trailing_blank("x = 1") == ""
    assert unheal(" = 0", " ") == "= 0"
    assert unheal("= 0", " ") == "= 0"
    assert unheal("  = 0", "\t") == "= 0"
    text = "def f(xs):\n    total \n"
    offset = text.index("total ") + len("total ")
    backend = answers(" = 0")
    result = CompletionPipeline(backend).complete(at(text, offset))
    assert result.text == "= 0"
    assert render_prompt(backend.requests[0].prompt).endswith("    total")
    off = CompletionPipeline(answers(" = 0"), PipelineSettings(token_healing=False))
    assert off.complete(at(text, offset)).text == " = 0"


def test_a_block_opener_ends_where_its_body_already_follows() -> None:
    from lsp.core.text.partials import cut_at_existing_body

    text = "def f(l1, l2):\n    for e1 in l1:\n\n            if e1 == e2:\n                pass\n"
    offset = text.index("\n\n") + 1
    suggestion = "        for e2 in l2:\n            if e1 in ret:\n                ret.add(e2)"
    assert cut_at_existing_body(suggestion, at(text, offset)) == "        for e2 in l2:"
    # A body below at the suggestion's own level is not the opener's: nothing is cut.
    flat = "def f(xs):\n\n    return 1\n"
    block = "    for x in xs:\n        print(x)"
    assert cut_at_existing_body(block, at(flat, flat.index("\n\n") + 1)) == block
    backend = answers(suggestion)
    assert CompletionPipeline(backend).complete(at(text, offset)).text == "        for e2 in l2:"
    off = CompletionPipeline(answers(suggestion), PipelineSettings(suffix_body=False))
    assert off.complete(at(text, offset)).text == suggestion


def test_a_candidate_that_makes_the_buffer_parse_is_preferred() -> None:
    from lint_bridge.suffix_names import broken_at_cursor

    text = "def f(xs):\n    total = 0\n\n        total += 1\n    return total\n"
    offset = text.index("\n\n") + 1
    assert broken_at_cursor(text, offset)  # a body below waits for its opener
    assert not broken_at_cursor("x = 1\n\ny = 2\n", 6)  # parses already
    assert not broken_at_cursor("def f(:\n\nx = 1\n", 8)  # broken elsewhere
    settings = PipelineSettings(candidates=1, suffix_syntax=True)
    backend = answers("    print(xs)", "    total += 2", "    for x in xs:")
    # Two extra candidates are tried while none repairs the buffer; the third does.
    assert CompletionPipeline(backend, settings).complete(at(text, offset)).text == (
        "    for x in xs:"
    )
    assert len(backend.requests) == 3
    off = replace(settings, suffix_syntax=False)
    plain = CompletionPipeline(answers("    print(xs)", "    for x in xs:"), off)
    assert plain.complete(at(text, offset)).text == "    print(xs)"
    capped = replace(settings, extra_candidates=1)
    backend = answers("    print(xs)", "    total += 2", "    for x in xs:")
    assert CompletionPipeline(backend, capped).complete(at(text, offset)).text == ("    print(xs)")
    assert len(backend.requests) == 2
