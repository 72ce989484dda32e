"""Shared fixtures, and the two test tiers drawn from them.

``make check`` runs the fast tier, ``pytest -m "not model and not e2e"``; ``make test``
runs every test. A test's tier follows from the fixtures it asks for and where it lives,
never from a marker written by hand (a test with a hand-written ``model`` or ``e2e``
marker fails):

* ``model``: the test uses a real model and asks for it: ``gemma_path`` (the embedded
  Gemma) or ``minilm_dir`` (the bundled embedding model), directly or through a fixture
  built on one (``served_model``, a module's own server or backend fixture).
* ``e2e``: the test drives the project end to end through processes it starts. It asks
  for the fixture that says which: ``lsp_server`` (``apprentice serve``, started by the
  test, by Neovim or by ``apprentice eval --trigger automatic|typed``) or ``served_model``
  (``llama_cpp.server``); or it lives in tests/e2e, marked whole: pytest-lsp starts
  ``apprentice serve`` for each test there (a server that loads the default model as an
  editor's would), and the indexer's crash test kills ``apprentice index`` again and again.

Both are enforced in every tier (tests/tiers.py), so the markers cannot drift: a test
not marked ``model`` that loads a real model in this process, or (the Gemma; outside the
``e2e`` tier, whose servers load it as an editor's do) in a subprocess started with this
environment, fails with "this test uses the real model: ask for the gemma_path fixture";
one not marked ``e2e`` that starts a server or an editor from this process fails before
it starts, naming the fixture to ask for.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import settings

from tests import tiers

TESTS = Path(__file__).resolve().parent
MODEL_FIXTURES = frozenset({"gemma_path", "minilm_dir"})
E2E_FIXTURES = frozenset({"lsp_server", "served_model"})
E2E_DIRS = (TESTS / "e2e",)
TIERS = ("model", "e2e")

tiers.install()
# The user's own settings file (lsp/core/user_settings.py) must not reach the code under
# test or the servers it starts: every test reads none unless it names one itself.
os.environ["APPRENTICE_SETTINGS"] = str(TESTS / "data" / "no-user-settings.json")
# Property tests run Hypothesis's 100 examples; make check asks for this profile instead.
settings.register_profile("check", max_examples=25)
_BY_HAND: dict[str, list[str]] = {}


def _asked(item: pytest.Item, names: frozenset[str]) -> bool:
    return bool(names.intersection(getattr(item, "fixturenames", ())))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test's tier from its fixtures (and directory), before ``-m`` selects."""
    for item in items:
        by_hand = [tier for tier in TIERS if item.get_closest_marker(tier)]
        if by_hand:
            _BY_HAND[item.nodeid] = by_hand
        if _asked(item, MODEL_FIXTURES):
            item.add_marker(pytest.mark.model)
        if _asked(item, E2E_FIXTURES) or any(d in item.path.parents for d in E2E_DIRS):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Arm the guards for one test, its fixtures' set-up and tear-down included."""
    model = item.get_closest_marker("model") is not None
    e2e = item.get_closest_marker("e2e") is not None
    tiers.GUARD.arm(model=model, server=e2e)
    saved = os.environ.get("PYTHONPATH")
    if not (model or e2e):  # the stand-in for the Gemma's package, in its subprocesses
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (tiers.STAND_INS, saved)))
    try:
        return (yield)
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
        tiers.GUARD.arm(model=False, server=False)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A tier marker written by hand fails its test: the fixtures are the one source."""
    if item.nodeid in _BY_HAND:
        pytest.fail(
            f"{' and '.join(_BY_HAND[item.nodeid])} marked by hand: tiers come from fixtures "
            "(tests/conftest.py): remove the marker, ask for the fixture",
            pytrace=False,
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Fail a test whose refusal was swallowed (by a worker thread, a broad ``except``)."""
    result = yield
    if tiers.GUARD.violations:
        pytest.fail(tiers.GUARD.violations[0], pytrace=False)
    return result


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    """Path of the embedded default GGUF (assembled into the user cache on first use)."""
    return tiers.real_default_model()


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The bundled all-MiniLM-L6-v2 directory: the real embedding model's files."""
    return tiers.real_minilm_dir()


@pytest.fixture(scope="session")
def lsp_server() -> Sequence[str]:
    """The command that starts ``apprentice serve`` from this checkout. Ask for it wherever
    the test starts the server as a subprocess, itself or through Neovim or ``apprentice
    eval --trigger automatic|typed``: that marks the test ``e2e``."""
    return (sys.executable, "-m", "lsp.cli", "serve")


@pytest.fixture(scope="session")
def served_model(gemma_path: Path) -> Sequence[str]:
    """The command that serves the embedded Gemma with ``llama_cpp.server`` (host, port and
    sizes to add): the test is marked ``e2e``, and ``model`` through ``gemma_path``. A
    request that comes while another streams waits for it instead of cutting it short."""
    command = (sys.executable, "-m", "llama_cpp.server", "--model", str(gemma_path))
    return (*command, "--interrupt_requests", "False")
