"""Holes cut from a repository, their tags, and the index built with them masked."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from model.training.repo_tasks import KINDS, SourceFile, cut_tasks, masked_text

STORE = '''"""Storage."""


def load_inventory(path):
    """Read the inventory file."""
    with open(path) as f:
        rows = f.read().splitlines()
    return [row.split(",") for row in rows]


class Shelf:
    def __init__(self, name):
        self.name = name
        self.items = []
'''

APP = """from store import load_inventory


def restock(path, minimum):
    inventory = load_inventory(path)
    low = [item for item in inventory if int(item[1]) < minimum]
    if low:
        print("restock", len(low))
        return low
    return []
"""


def files() -> list[SourceFile]:
    return [SourceFile("store.py", STORE), SourceFile("app.py", APP)]


def test_every_kind_is_found_and_the_answer_is_the_masked_text() -> None:
    # Holes of one file never overlap, so each seed keeps a different mix.
    tasks = [t for seed in range(12) for t in cut_tasks(files(), per_file=20, seed=seed)]
    kinds = {task.kind for task in tasks}
    assert kinds == set(KINDS)
    for task in tasks:
        assert task.original[task.start : task.end] == task.answer
        assert task.answer.strip()
        if task.kind in ("line", "block", "body"):
            assert task.line_hole
        else:
            assert not task.line_hole and "\n" not in task.answer


def test_cross_file_tasks_name_what_another_file_defines() -> None:
    tasks = [t for seed in range(12) for t in cut_tasks(files(), per_file=20, seed=seed)]
    assign = next(t for t in tasks if t.kind == "assign" and "load_inventory" in t.answer)
    assert assign.cross_file and assign.callee == "load_inventory"
    assert assign.meta["defined_elsewhere"] == "load_inventory"
    local = [t for t in tasks if t.path == "store.py" and t.kind in ("assign", "line")]
    assert local and not any(t.cross_file for t in local)
    only = cut_tasks(files(), per_file=20, cross_file_only=True)
    assert only and all(t.cross_file for t in only)


def test_selection_is_deterministic_limited_and_keeps_kinds_mixed() -> None:
    first = cut_tasks(files(), limit=4, seed=3, per_file=20)
    again = cut_tasks(files(), limit=4, seed=3, per_file=20)
    assert [t.task_id for t in first] == [t.task_id for t in again]
    available = {t.kind for t in cut_tasks(files(), seed=3, per_file=20)}
    assert len(first) == 4 and len({t.kind for t in first}) == min(4, len(available))


def test_holes_of_one_file_never_share_a_line_and_mask_together() -> None:
    tasks = [t for t in cut_tasks(files(), per_file=20) if t.path == "app.py"]
    lines = [
        set(range(APP.count("\n", 0, t.start), APP.count("\n", 0, max(t.start, t.end - 1)) + 1))
        for t in tasks
    ]
    for i, a in enumerate(lines):
        for b in lines[i + 1 :]:
            assert not a & b
    masked = masked_text(APP, tasks)
    for task in tasks:
        assert task.answer.strip() not in masked


def test_a_file_that_does_not_parse_is_skipped() -> None:
    tasks = cut_tasks([SourceFile("bad.py", "def (:\n"), *files()])
    assert tasks and all(t.path != "bad.py" for t in tasks)


def _git_repo(root: Path) -> Path:
    root.mkdir()
    (root / "store.py").write_text(STORE)
    (root / "app.py").write_text(APP.replace("restock", "restock_shelves_nightly"))
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def test_the_masked_text_reaches_neither_the_index_nor_the_prompt(tmp_path: Path) -> None:
    """No leakage: the hole's text is in no indexed chunk and in no prompt."""
    from lsp.core.pipeline import Cursor
    from lsp.core.settings import ServerSettings
    from lsp.evaluation.repo import prepare
    from lsp.evaluation.runner import Variant, pipeline_for
    from model.runtime.api import render_prompt
    from model.runtime.fake import FakeBackend
    from model.training.holes import place

    repo = _git_repo(tmp_path / "shop")
    suite = prepare(repo, limit=None, seed=0, kinds=["assign"], embed=False)
    try:
        task = next(t for t in suite.tasks if "int(item[1]) < minimum" in t.answer)
        secret = task.answer
        assert suite.index is not None
        store = suite.index.store
        chunks = [chunk.text for _, chunk in store.all_chunks()]
        assert chunks and not any(secret in text for text in chunks)
        # The repository itself is untouched; the index is of the masked copy.
        assert secret in (repo / task.path).read_text()
        backend = FakeBackend(respond=lambda prompt: "[]")
        variant = Variant("everything", context=True, verify=False, candidates=1)
        pipeline = pipeline_for(backend, ServerSettings(), variant, suite.workspace)
        view = place(task, "cursor")
        cursor = Cursor(task.path, "python", view.text, view.offset, "shop")
        result = pipeline.complete(cursor)
        assert result.snippets_used  # repository context did reach the prompt ...
        prompt = render_prompt(backend.requests[0].prompt)
        assert "def load_inventory" in prompt
        assert secret not in prompt  # ... but never the hidden answer
    finally:
        suite.close()
    assert not suite.copy.exists()


def test_a_repository_without_python_is_a_clear_error(tmp_path: Path) -> None:
    from lsp.evaluation.repo import prepare

    root = tmp_path / "docs"
    root.mkdir()
    (root / "README.md").write_text("# docs\n")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    with pytest.raises(ValueError, match="no Python files"):
        prepare(root, limit=None, seed=0, kinds=KINDS, embed=False)
