"""What the stand-ins share: the refusal, and the real package for what may still be read.

Imported as ``model_refusal`` by the stand-ins in a subprocess (this folder on its
PYTHONPATH) and as ``tests.model_guard.model_refusal`` by tests/conftest.py.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType
from typing import NoReturn

MESSAGE = "this test uses the real model: ask for the {} fixture"
HERE = os.path.dirname(os.path.abspath(__file__))


class ModelNotRequested(RuntimeError):
    """A test reached a real model without asking for its fixture."""


def refuse(fixture: str) -> NoReturn:
    """Fail, naming the fixture the test should ask for."""
    raise ModelNotRequested(MESSAGE.format(fixture))


def installed_package(name: str) -> ModuleType:
    """The installed package ``name``, found past this folder, loaded under a private name."""
    path = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != HERE]
    spec = importlib.machinery.PathFinder.find_spec(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"No module named {name!r}", name=name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
