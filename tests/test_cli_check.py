"""`apprentice check`: one candidate verified through the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BUFFER = """import json
import os


def load(path):
    with open(path) as f:
        data = json.load(f)
    return data
"""


def check(
    path: Path, line: int, col: int, text: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "lsp.cli",
            "check",
            str(path),
            "--line",
            str(line),
            "--col",
            str(col),
            "--text",
            text,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def write_repo(root: Path, ruff_config: str = "") -> Path:
    root.mkdir()
    subprocess.run(["git", "-C", str(root), "init", "-q"], check=True)
    if ruff_config:
        (root / "pyproject.toml").write_text(ruff_config)
    target = root / "loader.py"
    target.write_text(BUFFER)
    return target


def test_json_verdicts(tmp_path: Path) -> None:
    target = write_repo(tmp_path / "repo")
    end = len("        data = json.load(f)")
    good = check(target, 6, end, "\n        size = os.path.getsize(path)", "--json")
    assert good.returncode == 0, good.stderr
    verdict = json.loads(good.stdout)
    assert set(verdict) >= {"verdict", "text", "reasons", "elapsed_ms"}
    assert verdict["verdict"] == "accept" and verdict["reasons"] == []

    bad = json.loads(
        check(target, 6, end, "\n        size = os.path.joinpath(path)", "--json").stdout
    )
    assert bad["verdict"] == "reject" and bad["text"] is None
    assert {"kind": "unknown-symbol", "symbol": "os.path.joinpath"}.items() <= bad["reasons"][
        0
    ].items()

    mixed = json.loads(
        check(
            target, 6, end, "\n        keys = list(data)\n        data.nonexistent_call(", "--json"
        ).stdout
    )
    assert mixed["verdict"] == "repair" and mixed["text"] == "\n        keys = list(data)"


def test_the_projects_ruff_configuration_decides(tmp_path: Path) -> None:
    candidate = "\n        print(data)"
    end = len("        data = json.load(f)")
    strict = write_repo(tmp_path / "strict", '[tool.ruff.lint]\nselect = ["F", "T20"]\n')
    relaxed = write_repo(tmp_path / "relaxed", '[tool.ruff.lint]\nselect = ["F"]\n')
    flagged = json.loads(check(strict, 6, end, candidate, "--json").stdout)
    assert flagged["verdict"] == "reject"
    assert [r["code"] for r in flagged["reasons"]] == ["T201"]
    assert json.loads(check(relaxed, 6, end, candidate, "--json").stdout)["verdict"] == "accept"


def test_a_rule_the_project_ignores_is_not_held_against_a_candidate(tmp_path: Path) -> None:
    candidate = "\n        value = undefined_helper(data)"
    end = len("        data = json.load(f)")
    ignoring = write_repo(
        tmp_path / "ignoring", '[tool.ruff.lint]\nselect = ["F"]\nignore = ["F821"]\n'
    )
    verdict = json.loads(check(ignoring, 6, end, candidate, "--json").stdout)
    # Ruff is told to ignore F821; the symbol check still names the unknown helper.
    assert all(r["kind"] != "ruff" for r in verdict["reasons"])
    assert any(r["symbol"] == "undefined_helper" for r in verdict["reasons"])


def test_human_output_and_bad_position(tmp_path: Path) -> None:
    target = write_repo(tmp_path / "repo")
    shown = check(
        target, 6, len("        data = json.load(f)"), "\n        x = json.loads_file(path)"
    )
    assert shown.returncode == 0
    assert shown.stdout.startswith("reject") and "unknown-symbol:json.loads_file" in shown.stdout
    outside = check(target, 99, 0, "x")
    assert outside.returncode == 1 and "past the end of the file" in outside.stderr
