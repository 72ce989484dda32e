"""Without the ``train`` extra: the server and its embedder run, ``train`` says what to install.

torch, transformers and peft are installed on the development machine, so the child
processes here hide them: a ``sitecustomize`` on PYTHONPATH puts a finder first on
``sys.meta_path`` that reports them missing, in the child and in every process it starts
(the ONNX export runs in one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lsp.cli import train as cli_train

REPO = Path(__file__).resolve().parents[1]
TRAIN_ONLY = ("torch", "transformers", "peft", "safetensors", "sentence_transformers", "gguf")
HIDE = f"""
import sys

_HIDDEN = {set(TRAIN_ONLY)!r}


class _Hide:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in _HIDDEN:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, _Hide())
"""
INSTALL = "pip install 'apprentice[train]'"


def run_python(
    args: list[str], tmp_path: Path, *, hide: bool, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in the repository with a fresh cache, the train extra hidden or not."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    if hide:
        site = tmp_path / "hide"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(HIDE, encoding="utf-8")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_hiding_works(tmp_path: Path) -> None:
    done = run_python(["-c", "import torch"], tmp_path, hide=True)
    assert done.returncode == 1
    assert "No module named 'torch'" in done.stderr


def test_train_without_the_extra_names_the_install_in_one_line(tmp_path: Path) -> None:
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    done = run_python(
        ["-m", "lsp.cli", "train", str(dataset), "-o", str(tmp_path / "out")], tmp_path, hide=True
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert INSTALL in lines[0]
    assert "pip install -e '.[train]'" in lines[0]
    assert "torch" in lines[0]
    assert not (tmp_path / "out").exists()


def test_the_first_missing_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # checked first: nothing heavy imported
    assert cli_train.missing_train_extra() == "torch"
    assert INSTALL in cli_train.TRAIN_EXTRA_FIX


def test_distill_needs_no_extra(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "calc.py").write_text(
        '"""Arithmetic."""\n\n\ndef add(a: int, b: int) -> int:\n'
        '    """Sum of two numbers."""\n    total = a + b\n    return total\n',
        encoding="utf-8",
    )
    out = tmp_path / "dataset"
    done = run_python(
        ["-m", "lsp.cli", "distill", str(repo), "-o", str(out), "--teacher", "none", "--no-tests"],
        tmp_path,
        hide=True,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "card.json").read_text())["counts"]["train_examples"] > 0


# The server's imports and a real embedder (exported into the child's fresh cache), then
# the heavy modules the process holds.
SERVE = f"""
import json, sys
import lsp.server.language_server
from indexer.embed import create_embedder

embedder = create_embedder("default", threads=1)
vectors = embedder.embed(["def add(a, b):\\n    return a + b", "parse a date"])
loaded = {{name.partition(".")[0] for name in sys.modules}}
print(json.dumps({{
    "name": embedder.name,
    "shape": list(vectors.shape),
    "heavy": sorted(loaded & {set(TRAIN_ONLY)!r}),
}}))
"""


@pytest.mark.parametrize("hide", [False, True], ids=["extra-installed", "extra-hidden"])
def test_server_and_onnx_export_need_no_torch(tmp_path: Path, hide: bool, minilm_dir: Path) -> None:
    done = run_python(["-c", SERVE], tmp_path, hide=hide)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["name"] == "all-MiniLM-L6-v2/onnx-int8/128"
    assert result["shape"] == [2, 384]
    assert result["heavy"] == []
    entries = list((tmp_path / "cache" / "apprentice" / "embedders").glob("*/model.onnx"))
    assert len(entries) == 1  # exported here, in the child's child
