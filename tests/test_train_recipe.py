"""The training recipe is written once: the dataclass's defaults are the shipped student's
recipe, ``apprentice train`` has one flag per field with the same default, and ``make
student`` passes nothing of the recipe but what it exposes as variables."""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import pytest

from lsp.cli import build_parser
from model.training.train.recipe import ALL_PROJECTIONS, NOT_IDENTITY, Recipe, flag_of

ROOT = Path(__file__).resolve().parent.parent


def train_args(*extra: str) -> argparse.Namespace:
    args = build_parser().parse_args(["train", "dataset", "-o", "out", *extra])
    assert isinstance(args, argparse.Namespace)
    return args


def test_every_recipe_field_has_a_flag_whose_default_is_the_field_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = train_args()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    help_text = capsys.readouterr().out
    for item in fields(Recipe):
        assert getattr(args, item.name) == item.default, item.name
        assert flag_of(item) in help_text, item.name
        assert item.metadata["help"], item.name


def test_the_flags_keep_their_names_and_types() -> None:
    args = train_args(
        "--lr", "3e-4", "--warmup", "5", "--targets", "q_proj, v_proj", "--plain-ratio", "0.25",
        "--steps", "7", "--device", "auto", "--batch-size", "8", "--precision", "fp32",
    )  # fmt: skip
    recipe = Recipe(**{item.name: getattr(args, item.name) for item in fields(Recipe)})
    assert (recipe.learning_rate, recipe.warmup_steps, recipe.steps) == (3e-4, 5, 7)
    assert recipe.targets == ("q_proj", "v_proj") and recipe.plain_ratio == 0.25
    assert recipe.device == "auto"
    assert (recipe.batch_size, recipe.precision) == (8, "fp32")


# Fields added since the shipped student was trained, at the values that train it as it was
# trained: one example a step, float32 (its device was the CPU).
ADDED_SINCE = {"batch_size": 1, "precision": "auto"}


def shipped_settings() -> dict[str, Any]:
    shipped = json.loads((ROOT / "model" / "student" / "training.json").read_text())
    return dict(shipped["settings"])


def test_the_defaults_are_the_shipped_students_recipe() -> None:
    assert shipped_settings()["device"] == "cpu"
    expected = {**ADDED_SINCE, **shipped_settings()}
    assert {**asdict(Recipe()), "targets": list(ALL_PROJECTIONS)} == expected


def test_a_run_from_before_batches_keeps_its_identity() -> None:
    """One example a step adds nothing to the identity: older step checkpoints resume."""
    before = {k: v for k, v in shipped_settings().items() if k not in NOT_IDENTITY}
    assert Recipe().identity() == before


def test_the_batch_is_part_of_a_runs_identity_and_the_precision_is_not() -> None:
    assert Recipe(batch_size=8).identity() == {**Recipe().identity(), "batch_size": 8}
    assert Recipe(precision="fp32").identity() == Recipe().identity()


def test_make_student_passes_only_its_variables() -> None:
    makefile = (ROOT / "Makefile").read_text()
    command = re.search(r"apprentice train (.*?)\n\t[^\t]", makefile, re.S)
    assert command is not None
    passed = set(re.findall(r"--[a-z-]+", command.group(1)))
    recipe_flags = {flag_of(item) for item in fields(Recipe)}
    assert passed & recipe_flags == {"--steps", "--device"}
    assert "STUDENT_STEPS ?= 1000" in makefile and "STUDENT_DEVICE ?= cpu" in makefile
    assert Recipe().steps == 1000 and Recipe().device == "cpu"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"steps": 0}, "--steps"),
        ({"batch_size": 0}, "--batch-size"),
        ({"precision": "bf16"}, "--precision bf16: choose auto or fp32"),
        ({"max_tokens": 8}, "--max-tokens"),
        ({"plain_ratio": 1.5}, "--plain-ratio"),
        ({"save_every": 0}, "--save-every"),
        ({"targets": ("q_proj", "qkv")}, "--targets qkv"),
        ({"targets": ()}, "--targets (none)"),
    ],
)
def test_a_recipe_that_cannot_train_is_refused(change: dict[str, Any], words: str) -> None:
    Recipe().check()
    with pytest.raises(ValueError, match=re.escape(words)):
        Recipe(**change).check()


def test_train_hands_the_recipe_and_the_parsed_base_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import lsp.cli.train as train_cli
    import model.training.train.run as run
    from lsp.cli import main

    seen: dict[str, Any] = {}

    def fake_train(dataset: Path, base: Any, out: Path, settings: Recipe, **_: Any) -> Any:
        seen.update(base=base, settings=settings)
        return {"steps": settings.steps}

    monkeypatch.setattr(train_cli, "missing_train_extra", lambda: None)
    monkeypatch.setattr(run, "train_student", fake_train)
    assert main(["train", "ds", "-o", "out", "--rank", "8", "--base", "base", "--json"]) == 0
    assert seen["settings"] == Recipe(rank=8)
    assert seen["base"].kind == "base"
    assert main(["train", "ds", "-o", "out", "--base", "http://127.0.0.1:9/v1"]) == 1
    assert "not accepted by --base" in capsys.readouterr().err
    assert main(["train", "ds", "-o", "out", "--targets", "qkv"]) == 1
    assert "--targets qkv" in capsys.readouterr().err
