"""The values static resolution deals in: modules, classes, instances, unknown and missing."""

from __future__ import annotations

import ast
import logging
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from lint_bridge.module_scan import ModuleSummary

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attributes:
    """The attribute names of a module or class; ``open``: any name may exist."""

    names: frozenset[str]
    open: bool = False

    def __contains__(self, name: object) -> bool:
        return self.open or name in self.names


@dataclass(frozen=True)
class ClassInfo:
    """A class statement in a module (``qualname`` dotted for nested classes)."""

    summary: ModuleSummary
    node: ast.ClassDef
    qualname: str

    @property
    def dotted(self) -> str:
        """``module.Class`` (just the qualname when the module has no name)."""
        return f"{self.summary.name}.{self.qualname}" if self.summary.name else self.qualname


@dataclass(frozen=True)
class ModuleValue:
    """A value known to be this module."""

    name: str


@dataclass(frozen=True)
class ClassValue:
    """A value known to be this class (the class object itself)."""

    cls: ClassInfo


@dataclass(frozen=True)
class InstanceValue:
    """A value known to be an instance of this class."""

    cls: ClassInfo


class Fact(Enum):
    """A value that exists but whose type is not known, or a name that does not exist."""

    UNKNOWN = "unknown"
    MISSING = "missing"


UNKNOWN = Fact.UNKNOWN
MISSING = Fact.MISSING

Value = ModuleValue | ClassValue | InstanceValue | Fact


class Namespace(Protocol):
    """Where names in an expression are looked up."""

    def value_of(self, name: str) -> Value:
        """The value bound to ``name``; MISSING when it is not bound."""
        ...


@dataclass(frozen=True)
class ClassFacts:
    """A class's attributes with its bases', and how calling it behaves."""

    names: frozenset[str]
    open: bool
    nested: dict[str, ClassInfo]
    plain_constructor: bool
    dynamic_subclassing: bool
    defines_call: bool
    stubbed: frozenset[ClassInfo] = frozenset()
    declared: dict[str, tuple[ClassInfo, ast.expr | None]] = field(default_factory=dict)
    ancestors: frozenset[ClassInfo] = frozenset()
    deps: tuple[tuple[str, int, int], ...] = ()
