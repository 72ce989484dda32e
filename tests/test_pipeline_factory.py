"""One pipeline factory and one list of levers: the server, ``apprentice complete`` and
``apprentice eval`` build the same pipeline from the same settings, and every place that
names levers reads them from ``lsp.core.levers``."""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from pathlib import Path

import pytest

from lsp.cli import build_parser
from lsp.cli.workspace import complete_settings
from lsp.core.coldstart import FIRST_PROMPT_TOKENS
from lsp.core.factory import backend_settings, build_pipeline, pipeline_settings
from lsp.core.levers import (
    DEFAULT_OFF,
    DEFAULT_ON,
    LEVER_NAMES,
    LEVERS,
    PIPELINE_LEVERS,
    default_of,
    lever_table,
)
from lsp.core.pipeline_types import PipelineSettings
from lsp.core.settings import ServerSettings, VerifySettings
from lsp.server.engine import Engine
from model.runtime.fake import FakeBackend

ROOT = Path(__file__).resolve().parent.parent

# PipelineSettings switches that are no lever (they are user settings).
NOT_LEVERS = {"multiline"}


def test_every_pipeline_lever_is_a_setting_with_the_registry_default() -> None:
    by_name = {f.name: f for f in fields(PipelineSettings)}
    defaults = PipelineSettings()
    for name in PIPELINE_LEVERS:
        assert name in by_name, f"lever {name} has no PipelineSettings field"
        assert by_name[name].type in ("bool", bool), name
        assert getattr(defaults, name) is default_of(name), name


def test_every_switch_of_the_pipeline_is_in_the_registry() -> None:
    """A lever added as a field but not to the registry would escape eval, help and docs."""
    switches = {f.name for f in fields(PipelineSettings) if f.type in ("bool", bool)}
    assert switches - set(PIPELINE_LEVERS) == NOT_LEVERS


def test_the_registry_is_well_formed() -> None:
    assert len(set(LEVER_NAMES)) == len(LEVER_NAMES)
    for entry in LEVERS:
        assert entry.does.strip() and entry.measured.strip(), entry.name
        assert "|" not in entry.does + entry.measured, entry.name  # a table cell each
        assert "\n" not in entry.does + entry.measured, entry.name
    assert set(DEFAULT_OFF) | DEFAULT_ON == set(LEVER_NAMES)


def test_the_runner_takes_its_levers_from_the_registry() -> None:
    from lsp.evaluation.runner import DEFAULT_LEVERS, LEVERS, default_variant, with_lever

    assert tuple(LEVERS) == LEVER_NAMES
    assert DEFAULT_LEVERS == DEFAULT_ON
    assert default_variant(2).levers == DEFAULT_ON
    with pytest.raises(ValueError, match="choose from line_start"):
        with_lever(default_variant(2), "no_such_lever")


def test_the_eval_help_names_the_levers() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {action.dest: action.help or "" for action in commands.choices["eval"]._actions}
    for name in DEFAULT_ON:
        assert name in helps["without_lever"], name
    for name in DEFAULT_OFF:
        assert name in helps["with_lever"], name


def test_docs_show_the_rendered_table_verbatim() -> None:
    """docs/levers.md is refreshed with ``python -m lsp.core.levers``."""
    table = lever_table()
    assert table.count("\n") == len(LEVERS) + 2
    assert table in (ROOT / "docs" / "levers.md").read_text(encoding="utf-8")


# -- one factory ---------------------------------------------------------------------


def test_the_server_settings_make_the_pipeline() -> None:
    pipeline = build_pipeline(ServerSettings(), FakeBackend(), root=None)
    settings = pipeline.settings
    completion = ServerSettings().completion
    assert settings.max_tokens == completion.max_tokens
    assert settings.candidates == completion.candidates
    assert settings.timeout_s == completion.timeout_ms / 1000
    assert settings.first_prompt_tokens == FIRST_PROMPT_TOKENS
    assert pipeline.verifier is not None
    assert all(getattr(settings, name) is default_of(name) for name in PIPELINE_LEVERS)


def test_a_one_off_takes_the_full_prompt_and_keeps_no_snapshots() -> None:
    server = build_pipeline(ServerSettings(), FakeBackend(), root=None).settings
    once = build_pipeline(ServerSettings(), FakeBackend(), root=None, one_off=True).settings
    assert once == replace(server, first_prompt_tokens=0)
    assert backend_settings(ServerSettings(), one_off=True) == replace(
        backend_settings(ServerSettings()), snapshot_mb=0
    )


def test_verification_off_means_no_verifier() -> None:
    settings = replace(ServerSettings(), verify=VerifySettings(False, False, False))
    assert build_pipeline(settings, FakeBackend(), root=None).verifier is None
    only_syntax = replace(ServerSettings(), verify=VerifySettings(True, False, False))
    verifier = build_pipeline(only_syntax, FakeBackend(), root=None).verifier
    assert verifier is not None and not verifier.settings.ruff


def test_levers_are_switched_by_name_and_only_pipeline_ones() -> None:
    pipeline = build_pipeline(
        ServerSettings(), FakeBackend(), root=None, levers={"line_start": False}
    )
    assert pipeline.settings.line_start is False
    with pytest.raises(ValueError, match="context"):
        build_pipeline(ServerSettings(), FakeBackend(), root=None, levers={"unused_imports": True})
    with pytest.raises(ValueError, match="unknown lever"):
        build_pipeline(ServerSettings(), FakeBackend(), root=None, levers={"warp": True})


def test_the_engine_builds_through_the_factory(tmp_path: Path) -> None:
    engine = Engine(ServerSettings(), root=tmp_path, report=lambda key, message: None)
    try:
        pipeline = engine._pipeline(FakeBackend())
        assert pipeline.settings == pipeline_settings(ServerSettings())
        assert pipeline.verifier is not None
        assert pipeline.verifier.workspace_root == tmp_path
    finally:
        engine.close()


def _complete_args(*flags: str) -> argparse.Namespace:
    args = build_parser().parse_args(["complete", "x.py", "--line", "0", "--col", "0", *flags])
    assert isinstance(args, argparse.Namespace)
    return args


def test_apprentice_complete_without_flags_has_the_server_settings() -> None:
    args = _complete_args()
    for flag in ("max_tokens", "timeout", "candidates", "fim_template"):
        assert getattr(args, flag) is None, flag  # no second set of defaults
    assert complete_settings(args) == ServerSettings()


def test_apprentice_complete_flags_override_settings() -> None:
    settings = complete_settings(
        _complete_args(
            "--max-tokens",
            "200",
            "--timeout",
            "2.5",
            "--candidates",
            "4",
            "--fim-template",
            "none",
            "--no-verify",
            "--n-ctx",
            "2048",
            "--n-threads",
            "3",
        )
    )
    completion = settings.completion
    assert (completion.max_tokens, completion.max_tokens_multiline) == (200, 200)
    assert (completion.timeout_ms, completion.candidates) == (2500, 4)
    assert completion.fim_template == "none"
    assert (settings.model.context_length, settings.model.threads) == (2048, 3)
    assert settings.verify == VerifySettings(False, False, False)
    short = complete_settings(_complete_args("--max-tokens", "8")).completion
    assert (short.max_tokens, short.max_tokens_multiline) == (8, 96)


def test_apprentice_complete_refuses_what_the_settings_refuse() -> None:
    with pytest.raises(ValueError, match=r"completion\.candidates: 0 is out of range"):
        complete_settings(_complete_args("--candidates", "0"))


def test_eval_differs_from_the_server_only_where_it_says(tmp_path: Path) -> None:
    from lsp.evaluation.driver import EvalOptions, eval_settings
    from lsp.evaluation.runner import Workspace, default_variant, pipeline_for

    options = EvalOptions()
    variant = default_variant(options.candidates)
    pipeline = pipeline_for(FakeBackend(), eval_settings(options), variant, Workspace(tmp_path))
    server = pipeline_settings(ServerSettings())
    assert pipeline.settings == replace(server, timeout_s=options.timeout_s, first_prompt_tokens=0)
    assert pipeline.verifier is not None
