"""Ruff reads configuration from inside the workspace only (``lint_bridge.ruff_config``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lint_bridge.ruff import RuffRunner, find_ruff
from lint_bridge.ruff_config import config_args

pytestmark = pytest.mark.skipif(find_ruff() is None, reason="ruff is not installed")

# T201 (print) is off in ruff's defaults: it shows only when a configuration selects it.
SELECT_PRINT = '[lint]\nselect = ["T20"]\n'
CODE = 'print("hello")\n'


def codes(runner: RuffRunner, path: Path) -> set[str]:
    found = asyncio.run(runner.diagnostics(CODE, path))
    assert found is not None
    return {d.code for d in found}


@pytest.fixture
def outer(tmp_path: Path) -> Path:
    """A directory above the workspace with a configuration of its own (not trusted)."""
    (tmp_path / "ruff.toml").write_text(SELECT_PRINT)
    (tmp_path / "pyproject.toml").write_text('[tool.ruff.lint]\nselect = ["T20"]\n')
    workspace = tmp_path / "workspace"
    (workspace / "pkg").mkdir(parents=True)
    return workspace


def test_a_configuration_above_the_workspace_is_ignored(outer: Path) -> None:
    target = outer / "pkg" / "m.py"
    assert "T201" in codes(RuffRunner(), target)  # ruff alone finds the outer one
    assert "T201" not in codes(RuffRunner(workspace_root=outer), target)


def test_the_workspace_configuration_is_used(outer: Path) -> None:
    (outer / "ruff.toml").write_text(SELECT_PRINT)
    assert "T201" in codes(RuffRunner(workspace_root=outer), outer / "pkg" / "m.py")


def test_a_pyproject_without_ruff_settings_does_not_count(outer: Path) -> None:
    (outer / "pkg" / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (outer / "ruff.toml").write_text(SELECT_PRINT)
    args = config_args(outer / "pkg" / "m.py", outer)
    assert args == ["--config", str(outer / "ruff.toml")]


def test_extend_out_of_the_workspace_is_refused(outer: Path, tmp_path: Path) -> None:
    (outer / "ruff.toml").write_text('extend = "../ruff.toml"\n')
    assert config_args(outer / "pkg" / "m.py", outer) == ["--isolated"]
    assert "T201" not in codes(RuffRunner(workspace_root=outer), outer / "pkg" / "m.py")


def test_extend_through_a_shell_expansion_is_refused(outer: Path, tmp_path: Path) -> None:
    # ruff expands the variable's default to the outer configuration; read literally, the
    # path is a harmless file inside the workspace.
    extend = f"${{APPRENTICE_UNSET_VARIABLE:-{tmp_path}}}/ruff.toml"
    decoy = outer / extend
    decoy.parent.mkdir(parents=True)
    decoy.write_text("")
    (outer / "ruff.toml").write_text(f'extend = "{extend}"\n')
    assert config_args(outer / "pkg" / "m.py", outer) == ["--isolated"]
    assert "T201" not in codes(RuffRunner(workspace_root=outer), outer / "pkg" / "m.py")


def test_extend_through_the_home_directory_is_refused(
    outer: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(outer))
    (outer / "base.toml").write_text(SELECT_PRINT)
    (outer / "ruff.toml").write_text('extend = "~/base.toml"\n')
    assert config_args(outer / "pkg" / "m.py", outer) == ["--isolated"]


def test_a_deeply_nested_configuration_is_not_used(outer: Path) -> None:
    (outer / "ruff.toml").write_text("x = " + "[" * 10_000 + "]" * 10_000 + "\n")
    assert config_args(outer / "pkg" / "m.py", outer) == ["--isolated"]


def test_extend_inside_the_workspace_is_followed(outer: Path) -> None:
    (outer / "base.toml").write_text(SELECT_PRINT)
    (outer / "pkg" / "ruff.toml").write_text('extend = "../base.toml"\n')
    assert config_args(outer / "pkg" / "m.py", outer) == [
        "--config",
        str(outer / "pkg" / "ruff.toml"),
    ]
    assert "T201" in codes(RuffRunner(workspace_root=outer), outer / "pkg" / "m.py")


def test_a_configuration_symlinked_from_outside_is_refused(outer: Path, tmp_path: Path) -> None:
    (outer / "ruff.toml").symlink_to(tmp_path / "ruff.toml")
    assert config_args(outer / "pkg" / "m.py", outer) == ["--isolated"]


def test_a_file_outside_the_workspace_gets_no_configuration(outer: Path, tmp_path: Path) -> None:
    assert config_args(tmp_path / "elsewhere" / "m.py", outer) == ["--isolated"]
    assert config_args(outer / "pkg" / "m.py", None) == []
