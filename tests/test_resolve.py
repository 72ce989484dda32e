"""Static module and class resolution: typeshed stubs, installed packages, a repository on disk."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from lint_bridge.module_finder import default_search_paths, find_typeshed_stdlib
from lint_bridge.resolve import ModuleResolver, default_resolver
from lint_bridge.values import MISSING

VERSION = f"python{sys.version_info[0]}.{sys.version_info[1]}"


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


REPO = {
    "shop/__init__.py": "from .cart import Cart\n",
    "shop/base.py": """
        class BaseService:
            def __init__(self):
                self.log = []

            def record(self, event):
                self.log.append(event)
        """,
    "shop/cart.py": """
        from dataclasses import dataclass, field
        from enum import Enum
        from typing import NamedTuple

        from nowhere_at_all import MysteryBase

        from shop.base import BaseService


        class Status(Enum):
            OPEN = 1
            CLOSED = 2


        @dataclass
        class Item:
            name: str
            price: float = 0.0
            tags: list[str] = field(default_factory=list)


        class Point(NamedTuple):
            x: int
            y: int


        class Cart(BaseService):
            TAX = 0.2
            __slots__ = ("owner",)

            def __init__(self):
                super().__init__()
                self.items: list[Item] = []

            def add(self, item):
                self.items.append(item)
                self.last, self.count = item, len(self.items)

            @property
            def total(self):
                return sum(i.price for i in self.items)

            @classmethod
            def empty(cls):
                cls.registry = []
                return cls()

            class Meta:
                label = "cart"


        class Token(str):
            def __new__(cls, value, kind):
                self = super().__new__(cls, value)
                self.kind = kind
                return self

            @classmethod
            def blank(cls):
                token = cls("", "blank")
                token.origin = "factory"
                return token


        class Dynamic:
            def __getattr__(self, name):
                return name


        class Mystery(MysteryBase):
            pass
        """,
    "shop/lazy.py": """
        def __getattr__(name):
            return name
        """,
    "shop/shim.py": """
        _OLD = {"old_a": 1, "old_b": 2}

        def current():
            pass

        def __getattr__(name):
            import warnings
            if name == "legacy":
                warnings.warn("legacy")
                return current
            if name in _OLD:
                return _OLD[name]
            raise AttributeError(name)
        """,
    "shop/star.py": "from shop.base import *\nfrom nowhere_at_all import *\n",
    "shop/partial_star.py": "from shop.base import *\n",
    "shop/typed.py": "def only_in_source():\n    pass\n",
    "shop/typed.pyi": "def only_in_stub() -> None: ...\n",
    "shop/compiled.cpython-311-x86_64-linux-gnu.so": "",
    "shop/branches.py": """
        import sys
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            from shop.cart import Cart
        try:
            import ujson as fastjson
        except ImportError:
            fastjson = None
        if sys.version_info >= (3, 12):
            def new_api():
                pass
        else:
            def old_api():
                pass
        first, (second, *rest) = 1, (2, 3)
        counter: int = 0
        __all__ = ["exported_lazily"]
        def setup():
            global configured
            configured = True
        """,
    "plugins/__init__.py": "__path__ = __import__('pkgutil').extend_path(__path__, __name__)\n",
    "site/fancy-stubs/__init__.pyi": "def stubbed() -> int: ...\n",
    "site/fancy/__init__.py": "def runtime_only():\n    pass\n",
    "site/extra.pth": "../elsewhere\n",
    "elsewhere/remote_mod.py": "VALUE = 1\n",
    "site/__editable___demo_0_1_finder.py": "MAPPING = {'edpkg': '/nonexistent'}\n",
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resolve") / "repo"
    write(root, REPO)
    edited = root / "edited"
    write(edited, {"edpkg/__init__.py": "NAME = 'edpkg'\n"})
    finder = root / "site" / "__editable___demo_0_1_finder.py"
    finder.write_text(f"MAPPING = {{'edpkg': {str(edited / 'edpkg')!r}}}\n")
    return root


@pytest.fixture(scope="module")
def resolver(repo: Path) -> ModuleResolver:
    paths = [repo, repo / "site", *default_search_paths(None)]
    return ModuleResolver(paths, typeshed_stdlib=find_typeshed_stdlib())


def test_typeshed_is_found_beside_mypy() -> None:
    stdlib = find_typeshed_stdlib()
    assert stdlib is not None and (stdlib / "VERSIONS").is_file()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("os", True),
        ("os.path", True),
        ("json", True),
        ("json.decoder", True),
        ("math", True),
        ("collections.abc", True),
        ("numpy", True),
        ("numpy.linalg", True),
        ("click", True),
        ("git", True),
        ("shop", True),
        ("shop.cart", True),
        ("shop.compiled", True),
        ("fancy", True),
        ("remote_mod", True),
        ("edpkg", True),
        ("nosuchmodule", False),
        ("json.nosuch", False),
        ("shop.nosuch", False),
        ("os.path.nosuch", False),
        ("nosuchmodule.child", False),
        ("plugins.anything", None),
        ("shop.compiled.child", None),
        ("_overlapped", None),  # standard, on Windows
        ("annotationlib", None),  # standard from Python 3.14
    ],
)
def test_module_exists(resolver: ModuleResolver, name: str, expected: bool | None) -> None:
    assert resolver.module_exists(name) is expected


def test_stdlib_attributes_come_from_typeshed(resolver: ModuleResolver) -> None:
    ospath = resolver.module_attributes("os.path")
    assert ospath is not None and not ospath.open
    assert "join" in ospath and "exists" in ospath and "joinpath" not in ospath
    os_attrs = resolver.module_attributes("os")
    assert os_attrs is not None and "path" in os_attrs and "environ" in os_attrs
    json_attrs = resolver.module_attributes("json")
    assert json_attrs is not None
    assert {"load", "loads", "dumps", "decoder", "JSONDecodeError"} <= json_attrs.names
    assert "loads_file" not in json_attrs
    math_attrs = resolver.module_attributes("math")  # a C module: only its stub knows
    assert math_attrs is not None and "sqrt" in math_attrs and "squareroot" not in math_attrs
    collections = resolver.module_attributes("collections")
    assert collections is not None and "OrderedDict" in collections
    assert "OrderedDictionary" not in collections


def test_resolving_twice_does_not_parse_again(resolver: ModuleResolver) -> None:
    resolver.module_attributes("os.path")
    count = resolver.parse_count
    assert resolver.module_attributes("os.path") is not None
    assert resolver.class_attributes("pathlib", "Path") is not None
    count = resolver.parse_count
    resolver.module_attributes("os.path")
    resolver.class_attributes("pathlib", "Path")
    assert resolver.parse_count == count


def test_installed_packages(resolver: ModuleResolver) -> None:
    click = resolver.module_attributes("click")
    assert click is not None and not click.open
    assert {"command", "option", "group", "echo"} <= click.names
    assert "__version__" in click  # answered by its deprecation __getattr__
    assert "no_such_decorator" not in click
    numpy = resolver.module_attributes("numpy")
    assert numpy is not None and {"array", "float64", "linalg", "random"} <= numpy.names
    git = resolver.module_attributes("git")
    assert git is not None and "Repo" in git
    repo_class = resolver.class_attributes("git", "Repo")
    assert repo_class is not None and "heads" in repo_class


def test_stubs_win_over_sources(resolver: ModuleResolver) -> None:
    typed = resolver.module_attributes("shop.typed")
    assert typed is not None and "only_in_stub" in typed and "only_in_source" not in typed
    fancy = resolver.module_attributes("fancy")
    assert fancy is not None and "stubbed" in fancy and "runtime_only" not in fancy


def test_extension_without_stub_is_unknown(resolver: ModuleResolver) -> None:
    assert resolver.module_exists("shop.compiled") is True
    assert resolver.module_attributes("shop.compiled") is None


def test_module_attributes_cover_every_branch(resolver: ModuleResolver) -> None:
    branches = resolver.module_attributes("shop.branches")
    assert branches is not None and not branches.open
    expected = {"Cart", "fastjson", "new_api", "old_api", "first", "second", "rest", "counter"}
    assert expected <= branches.names
    assert {"exported_lazily", "configured", "sys", "__file__"} <= branches.names
    assert "never_bound" not in branches


def test_open_modules(resolver: ModuleResolver) -> None:
    lazy = resolver.module_attributes("shop.lazy")
    assert lazy is not None and lazy.open and "anything" in lazy
    star = resolver.module_attributes("shop.star")
    assert star is not None and star.open
    partial = resolver.module_attributes("shop.partial_star")
    assert partial is not None and not partial.open and "BaseService" in partial


def test_plain_module_getattr_lists_its_names(resolver: ModuleResolver) -> None:
    shim = resolver.module_attributes("shop.shim")
    assert shim is not None and not shim.open
    assert {"legacy", "old_a", "old_b", "current"} <= shim.names
    assert "other" not in shim


def test_package_submodules_are_attributes(resolver: ModuleResolver) -> None:
    shop = resolver.module_attributes("shop")
    assert shop is not None
    assert {"Cart", "cart", "base", "lazy", "compiled"} <= shop.names
    assert "nosuch" not in shop


def test_class_attributes(resolver: ModuleResolver) -> None:
    cart = resolver.class_attributes("shop.cart", "Cart")
    assert cart is not None and not cart.open
    body = {"TAX", "add", "total", "empty", "Meta", "owner", "__init__"}
    assert body <= cart.names
    assert {"items", "last", "count", "registry"} <= cart.names  # self./cls. assignments
    assert {"log", "record"} <= cart.names  # inherited from shop.base
    assert "__class__" in cart and "no_such_method" not in cart
    token = resolver.class_attributes("shop.cart", "Token")
    assert token is not None and {"kind", "origin", "upper"} <= token.names  # set in __new__
    meta = resolver.class_attributes("shop.cart", "Cart.Meta")
    assert meta is not None and "label" in meta
    exported = resolver.class_attributes("shop", "Cart")  # re-exported by the package
    assert exported is not None and "add" in exported


def test_dataclass_enum_namedtuple(resolver: ModuleResolver) -> None:
    item = resolver.class_attributes("shop.cart", "Item")
    assert item is not None and {"name", "price", "tags", "__dataclass_fields__"} <= item.names
    status = resolver.class_attributes("shop.cart", "Status")
    assert status is not None and not status.open
    assert {"OPEN", "CLOSED", "name", "value", "__members__"} <= status.names
    assert "PURPLE" not in status
    point = resolver.class_attributes("shop.cart", "Point")
    assert point is not None and {"x", "y", "_asdict", "_fields", "count"} <= point.names
    assert "z" not in point


def test_open_classes(resolver: ModuleResolver) -> None:
    dynamic = resolver.class_attributes("shop.cart", "Dynamic")
    assert dynamic is not None and dynamic.open
    mystery = resolver.class_attributes("shop.cart", "Mystery")  # unresolvable base
    assert mystery is not None and mystery.open
    assert resolver.class_attributes("shop.cart", "NoSuchClass") is None
    assert resolver.class_attributes("shop.cart", "field") is None  # a function


def test_stdlib_classes(resolver: ModuleResolver) -> None:
    path = resolver.class_attributes("pathlib", "Path")
    assert path is not None and not path.open
    assert {"read_text", "joinpath", "exists", "parent", "name"} <= path.names
    assert "no_such_method" not in path
    ordered = resolver.class_attributes("collections", "OrderedDict")
    assert ordered is not None and {"move_to_end", "items", "get"} <= ordered.names


def test_changed_file_is_read_again(tmp_path: Path) -> None:
    write(tmp_path, {"mod.py": "class A:\n    def old(self):\n        pass\n"})
    resolver = ModuleResolver([tmp_path])
    first = resolver.class_attributes("mod", "A")
    assert first is not None and "old" in first and "new" not in first
    path = tmp_path / "mod.py"
    path.write_text(
        "class A:\n    def old(self):\n        pass\n    def new(self):\n        pass\n"
    )
    stamp = path.stat().st_mtime_ns + 1_000_000
    os.utime(path, ns=(stamp, stamp))
    second = resolver.class_attributes("mod", "A")
    assert second is not None and "new" in second


def test_subclass_sees_a_changed_base(tmp_path: Path) -> None:
    write(tmp_path, {"base.py": "class B:\n    x = 1\n", "sub.py": "from base import B\n\n"})
    (tmp_path / "sub.py").write_text("from base import B\n\nclass S(B):\n    pass\n")
    resolver = ModuleResolver([tmp_path])
    first = resolver.class_attributes("sub", "S")
    assert first is not None and "x" in first and "y" not in first
    base = tmp_path / "base.py"
    base.write_text("class B:\n    x = 1\n    y = 2\n")
    stamp = base.stat().st_mtime_ns + 1_000_000
    os.utime(base, ns=(stamp, stamp))
    second = resolver.class_attributes("sub", "S")
    assert second is not None and "y" in second


def test_default_resolver_search_path(tmp_path: Path) -> None:
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "__init__.py").write_text("")
    site = tmp_path / ".venv" / "lib" / VERSION / "site-packages"
    (site / "vendored").mkdir(parents=True)
    (site / "vendored" / "__init__.py").write_text("")
    resolver = default_resolver(tmp_path)
    paths = resolver.finder.search_paths
    assert paths[:3] == (tmp_path.resolve(), tmp_path.resolve() / "src", site.resolve())
    assert resolver.finder.typeshed is not None
    assert resolver.module_exists("pkg") and resolver.module_exists("vendored")
    assert resolver.module_name_for(tmp_path / "src" / "pkg" / "__init__.py") == ("pkg", True)
    assert resolver.module_name_for(tmp_path / "src" / "pkg" / "mod.py") == ("pkg.mod", False)


def test_without_typeshed_c_modules_are_unknown(tmp_path: Path) -> None:
    resolver = ModuleResolver(default_search_paths(None))
    assert resolver.module_exists("math") is True
    assert resolver.module_exists("nosuchmodule") is False
    math = resolver.module_attributes("math")
    assert math is None or "sqrt" in math


def test_undocumented_stdlib_names_are_found_in_the_source(resolver: ModuleResolver) -> None:
    util = resolver.module_attributes("multiprocessing.util")
    assert util is not None and "close_fds" not in util  # typeshed leaves it out...
    summary = resolver.summary("multiprocessing.util")
    assert summary is not None
    assert resolver.member(summary, "close_fds") is not MISSING  # ...the source has it
    assert resolver.member(summary, "no_such_helper") is MISSING
    typing = resolver.summary("typing")
    assert typing is not None and resolver.member(typing, "_GenericAlias") is not MISSING


def test_preload_reads_a_buffers_imports_ahead(tmp_path: Path) -> None:
    write(tmp_path, {"pkg/__init__.py": "", "pkg/mod.py": "X = 1\n", "solo.py": "Y = 2\n"})
    resolver = ModuleResolver([tmp_path], typeshed_stdlib=find_typeshed_stdlib())
    source = "import solo\nfrom pkg import mod\nfrom . import local\nimport nosuch\n"
    assert resolver.preload(source) == 4  # builtins, solo, pkg, pkg.mod
    assert resolver.preload(source) == 0
    count = resolver.parse_count
    assert resolver.module_attributes("pkg.mod") is not None
    assert resolver.parse_count == count
