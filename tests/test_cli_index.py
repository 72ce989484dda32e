"""`apprentice index` and `apprentice search` on a real repository (click's source)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def apprentice(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lsp.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


@pytest.fixture(scope="module")
def click_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = importlib.util.find_spec("click")
    assert spec is not None and spec.submodule_search_locations
    root = tmp_path_factory.mktemp("click-repo")
    shutil.copytree(
        next(iter(spec.submodule_search_locations)),
        root / "click",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    subprocess.run(["git", "-C", str(root), "init", "-q"], check=True)
    return root


def test_index_then_search_finds_definitions_by_description(
    click_repo: Path, tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path
) -> None:
    index_dir = str(tmp_path_factory.mktemp("index"))
    result = apprentice("index", str(click_repo), "--json", "--index-dir", index_dir)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) >= {"files", "chunks", "symbols", "seconds", "embedded", "reused"}
    assert report["files"] >= 15 and 100 < report["embedded"] <= report["chunks"]
    for query, path, name in [
        ("ask the user a yes or no question", "click/termui.py", "confirm"),
        ("wrap a paragraph of text to a given width", "click/formatting.py", "wrap_text"),
        (
            "directory where an application should store its configuration",
            "click/utils.py",
            "get_app_dir",
        ),
    ]:
        found = apprentice(
            "search", str(click_repo), query, "-k", "3", "--json", "--index-dir", index_dir
        )
        assert found.returncode == 0, found.stderr
        hits = json.loads(found.stdout)["hits"]
        assert set(hits[0]) == {"path", "start_line", "end_line", "score", "symbol"}
        assert any(h["path"] == path and h["symbol"].rpartition(".")[2] == name for h in hits), (
            query,
            hits,
        )
    again = apprentice("index", str(click_repo), "--json", "--index-dir", index_dir)
    assert json.loads(again.stdout)["embedded"] == 0


def test_search_without_an_index_says_so(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    result = apprentice(
        "search", str(tmp_path), "anything", "--index-dir", str(tmp_path / "idx"), "--lexical"
    )
    assert result.returncode == 1
    assert "apprentice index" in result.stderr


def test_unwritable_index_location_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    result = apprentice(
        "index", str(tmp_path), "--index-dir", str(blocker / "index"), "--embedder", "fake"
    )
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "not-a-directory" in lines[0], result.stderr


def test_empty_repository(tmp_path: Path) -> None:
    repo = tmp_path / "empty"
    repo.mkdir()
    subprocess.run(["git", "-C", str(repo), "init", "-q"], check=True)
    result = apprentice(
        "index", str(repo), "--json", "--index-dir", str(tmp_path / "idx"), "--embedder", "fake"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["files"] == 0


def test_second_indexer_waits_for_the_first(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.py").write_text("def f():\n    return 1\n")
    index_root = tmp_path / "idx"
    # The first holds the lock until told: once the second has said that it waits.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path\n"
            "from indexer.index import index_dir_for\n"
            "from indexer.lock import IndexLock\n"
            "d = index_dir_for(Path(sys.argv[1]), Path(sys.argv[2])); d.mkdir(parents=True)\n"
            "with IndexLock(d):\n    print('held', flush=True); sys.stdin.readline()\n",
            str(repo),
            str(index_root),
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    index = ["index", str(repo), "--json", "--index-dir", str(index_root), "--embedder", "fake"]
    second = subprocess.Popen(
        [sys.executable, "-m", "lsp.cli", *index],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert second.stderr is not None
    said = [second.stderr.readline()]
    while said[-1] and "waiting" not in said[-1]:
        said.append(second.stderr.readline())
    holder.stdin.close()  # the first one finishes
    holder.wait(timeout=60)
    out, rest = second.communicate(timeout=600)
    assert second.returncode == 0, "".join(said) + rest
    assert "waiting" in said[-1], "".join(said)
    assert json.loads(out)["files"] == 1
