"""Repository tasks cut only from the files a distilled dataset held out (company tuning)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lsp.evaluation.repo import prepare
from model.training.distill.dataset import CARD_JSON, DatasetError, heldout_paths

SAMPLE = Path(__file__).parents[1] / "data" / "sample_repo"


def _dataset(tmp_path: Path, heldout: list[str]) -> Path:
    directory = tmp_path / "dataset"
    directory.mkdir()
    card = {"format": {"family": "apprentice-gemma3", "version": 1}, "heldout_files": heldout}
    (directory / CARD_JSON).write_text(json.dumps(card), encoding="utf-8")
    return directory


def test_holes_come_only_from_held_out_files_and_the_rest_is_still_context(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "shop-repo"
    shutil.copytree(SAMPLE, repo)
    dataset = _dataset(tmp_path, ["shop-repo/shop/cart.py"])
    assert heldout_paths(dataset) == {"shop/cart.py"}

    every = prepare(repo, limit=None, seed=0, kinds=("line",), embed=False)
    try:
        assert {t.path for t in every.tasks} > {"shop/cart.py"}
    finally:
        every.close()
    suite = prepare(
        repo, limit=None, seed=0, kinds=("line",), embed=False, only_paths=heldout_paths(dataset)
    )
    try:
        assert suite.tasks and {t.path for t in suite.tasks} == {"shop/cart.py"}
        assert suite.files == 4  # every file is indexed, holes come from one
        assert len(suite.tasks) <= 2  # two holes a file unless asked for more
    finally:
        suite.close()
    more = prepare(
        repo,
        limit=None,
        seed=0,
        kinds=("line",),
        embed=False,
        only_paths={"shop/cart.py"},
        per_file=6,
    )
    try:
        assert len(more.tasks) > 2 and {t.path for t in more.tasks} == {"shop/cart.py"}
    finally:
        more.close()


def test_a_dataset_that_names_none_of_the_repository_files_is_an_error(tmp_path: Path) -> None:
    repo = tmp_path / "shop-repo"
    shutil.copytree(SAMPLE, repo)
    dataset = _dataset(tmp_path, ["other/lib/thing.py"])
    with pytest.raises(ValueError, match="none of the 1 files"):
        prepare(
            repo,
            limit=None,
            seed=0,
            kinds=("line",),
            embed=False,
            only_paths=heldout_paths(dataset),
        )


def test_a_missing_card_or_an_empty_held_out_list_says_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a finished"):
        heldout_paths(tmp_path)
    with pytest.raises(DatasetError, match="no held-out files"):
        heldout_paths(_dataset(tmp_path, []))
