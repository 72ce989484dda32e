"""Known-symbol check of inserted Python text against a realistic buffer and repository."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from lint_bridge.api import Reason, Splice
from lint_bridge.module_finder import default_search_paths, find_typeshed_stdlib
from lint_bridge.names import unknown_symbols
from lint_bridge.resolve import ModuleResolver

REPOSITORY = {
    "shop/__init__.py": "",
    "shop/base.py": """
        class BaseService:
            def __init__(self):
                self.log = []

            def record(self, event):
                self.log.append(event)
        """,
    "shop/cart.py": """
        from enum import Enum


        class Status(Enum):
            OPEN = 1
            CLOSED = 2


        class Cart:
            def __init__(self):
                self.items = []

            def add(self, item):
                self.items.append(item)

            @property
            def total(self):
                return sum(item.price for item in self.items)
        """,
}

SERVICE = '''\
"""Order service: loads orders and checks carts out."""

from __future__ import annotations

import collections
import json
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import click
import git
import numpy as np

from shop.base import BaseService
from shop.cart import Cart, Status


@dataclass
class Order:
    order_id: str
    lines: list[str] = field(default_factory=list)


class Color(Enum):
    RED = 1
    GREEN = 2


class Proxy:
    def __getattr__(self, name):
        return name


class OrderService(BaseService):
    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self._orders: dict[str, Order] = {}

    @property
    def count(self) -> int:
        return len(self._orders)

    def load(self, name: str) -> Order:
        path = self.root / name
        with open(path) as handle:
            data = json.load(handle)
        return Order(data["id"])

    def checkout(self, cart: Cart) -> float:
        total = 0.0
        # <CURSOR>
        later = total * 2
        return later

    @classmethod
    def create(cls) -> OrderService:
        return cls(Path("."))


def summarize(orders: list[Order]) -> dict[str, int]:
    counts: dict[str, int] = {}
    # <FUNCTION>
    return counts


# <MODULE>


@click.command()
def main() -> None:
    service = OrderService(Path("."))
    print(service.count)
'''


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("names") / "repo"
    for name, text in REPOSITORY.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.fixture(scope="module")
def resolver(repo: Path) -> ModuleResolver:
    return ModuleResolver(
        [repo, *default_search_paths(None)], typeshed_stdlib=find_typeshed_stdlib()
    )


def insert(
    buffer: str, marker: str, text: str, resolver: ModuleResolver, **kwargs: object
) -> tuple[list[Reason], str]:
    """Insert ``text`` in place of the line holding ``marker``; check it."""
    start = buffer.index(marker)
    start = buffer.rindex("\n", 0, start) + 1
    end = buffer.index("\n", start) + 1
    splice = Splice(start, end, text)
    after = splice.apply(buffer)
    options: dict = {"path": None, "module": "shop.orders", **kwargs}
    return unknown_symbols(after, splice, resolver=resolver, **options), after


def symbols(buffer: str, marker: str, text: str, resolver: ModuleResolver, **kw: object) -> list:
    return [reason.symbol for reason in insert(buffer, marker, text, resolver, **kw)[0]]


def method(*lines: str) -> str:
    return "".join(f"        {line}\n" for line in lines)


def function(*lines: str) -> str:
    return "".join(f"    {line}\n" for line in lines)


BAD_IN_METHOD = [
    (method('x = os.path.joinpath(self.root, "a")'), "os.path.joinpath"),
    (method("data = json.loads_file(str(total))"), "json.loads_file"),
    (method("self.nonexistent()"), "self.nonexistent"),
    (method("cart.no_such_method()"), "cart.no_such_method"),
    (method("from json import loads_file"), "json.loads_file"),
    (method("import nosuchmodule"), "nosuchmodule"),
    (method("Path.no_such_method(self.root)"), "Path.no_such_method"),
    (method("counts = collections.OrderedDictionary()"), "collections.OrderedDictionary"),
    (method("c = Cart()", "c.no_such"), "c.no_such"),
    (method("colour = Color.PURPLE"), "Color.PURPLE"),
    (method("return totl"), "totl"),
    (method("from shop.cart import NoSuch"), "shop.cart.NoSuch"),
    (method("np.linalg.no_such_routine(total)"), "np.linalg.no_such_routine"),
    (method("self.record_event(1)"), "self.record_event"),
    (method("Status.PENDING"), "Status.PENDING"),
    (method("order = Order('1')", "order.no_field"), "order.no_field"),
    (method("os.no_such_function()"), "os.no_such_function"),
]


@pytest.mark.parametrize(("text", "symbol"), BAD_IN_METHOD)
def test_hallucinations_are_flagged(resolver: ModuleResolver, text: str, symbol: str) -> None:
    assert symbols(SERVICE, "<CURSOR>", text, resolver) == [symbol]


GOOD_IN_METHOD = [
    method("for item in cart.items:", "    total += item.price"),
    method("names = [line.upper() for line in self._orders if line]"),
    method("with open(self.root) as handle:", "    handle.read()"),
    method("if (size := len(self._orders)) > 1:", "    total += size"),
    method('joined = os.path.join(self.root, "a")', "json.load(open(joined))"),
    method("self.root.exists()", "self._orders.clear()", "total += self.count"),
    method("self.log.append(total)", "self.record(total)"),
    method('text = Path("x").read_text()', "Path.cwd()"),
    method("order = Order('1')", "order.lines.append(order.order_id)"),
    method("total += Color.RED.value + len(Color.GREEN.name)"),
    method("status = Status.OPEN", "Status.CLOSED"),
    method("Proxy().anything_at_all()"),
    method("arr = np.array([1.0, 2.0])", "total += float(np.linalg.norm(arr))", "np.float64(1)"),
    method("rng = np.random.default_rng(0)", "rng.random()"),
    method("print(later)"),
    method("print(len(self._orders), ValueError, __name__, __file__)"),
    method("raise ValueError(f'{cart.total}')"),
    method("cart.add(total)", "cart.items.clear()"),
    method("repo = git.Repo('.')", "repo.heads"),
    method("data = self.load('x')", "data.whatever_it_has"),
    method("type(self).__name__", "self.__class__.__qualname__"),
    method("handler = lambda event, *rest: event + len(rest)"),
    method("fn = click.option('--name')", "click.echo('x')"),
    method("c = Cart()", "c.extra = 1", "print(c.extra)"),
    method("from shop import cart as cart_module", "cart_module.Cart"),
    method("from .cart import Cart as Again", "Again().add(1)"),
    method("import os.path", "os.path.exists('x')"),
    method("try:", "    pass", "except KeyError as error:", "    print(error.args)"),
    method("match total:", "    case float(value):", "        print(value)"),
    method("global GLOBAL_SETTING", "GLOBAL_SETTING = 1"),
    method("collections.OrderedDict().move_to_end('a')"),
    method("cls_name = OrderService.create().root"),
    method("counter = collections.Counter()", "counter.most_common(1)"),
]


@pytest.mark.parametrize("text", GOOD_IN_METHOD)
def test_correct_code_is_not_flagged(resolver: ModuleResolver, text: str) -> None:
    assert symbols(SERVICE, "<CURSOR>", text, resolver) == []


def test_module_level_insertions(resolver: ModuleResolver) -> None:
    bad = "@click.no_such_decorator\ndef other() -> None:\n    pass\n"
    assert symbols(SERVICE, "<MODULE>", bad, resolver) == ["click.no_such_decorator"]
    good = "@click.command()\n@click.option('--n')\ndef other(n: int) -> None:\n    print(n)\n"
    assert symbols(SERVICE, "<MODULE>", good, resolver) == []
    added_import = "import shutil\n\nshutil.copyfile('a', 'b')\nshutil.copy_file('a', 'b')\n"
    assert symbols(SERVICE, "<MODULE>", added_import, resolver) == ["shutil.copy_file"]
    new_class = (
        "class Special(BaseService):\n"
        "    def run(self) -> None:\n"
        "        self.record(1)\n"
        "        self.log.clear()\n"
        "        self.missing_helper()\n"
    )
    assert symbols(SERVICE, "<MODULE>", new_class, resolver) == ["self.missing_helper"]


def test_classmethod_cls_and_annotated_parameters(resolver: ModuleResolver) -> None:
    text = function("for order in orders:", "    counts[order.order_id] = len(order.lines)")
    assert symbols(SERVICE, "<FUNCTION>", text, resolver) == []
    text = function("def helper(cart: Cart | None, other: 'Cart') -> None:")
    text += function("    cart.add(1)", "    other.total", "    other.check_out()")
    assert symbols(SERVICE, "<FUNCTION>", text, resolver) == ["other.check_out"]


def test_positions_point_at_the_reference(resolver: ModuleResolver) -> None:
    reasons, after = insert(
        SERVICE, "<CURSOR>", method("x = 1", "y = os.path.joinpath(x)"), resolver
    )
    (reason,) = reasons
    assert reason.kind == "unknown-symbol" and reason.code == "unknown-symbol"
    assert reason.label == "unknown-symbol:os.path.joinpath"
    line = after.splitlines()[reason.line]
    assert line[reason.column :].startswith("os.path.joinpath")
    assert "joinpath" in reason.message


def test_mid_line_completion(resolver: ModuleResolver) -> None:
    buffer = SERVICE.replace("# <CURSOR>", "joined = os.path.jo")
    start = buffer.index("os.path.jo") + len("os.path.jo")
    for text, expected in (("in(self.root, 'a')", []), ("inpath(self.root)", ["os.path.joinpath"])):
        splice = Splice(start, start, text)
        after = splice.apply(buffer)
        found = unknown_symbols(after, splice, path=None, resolver=resolver, module="shop.orders")
        assert [reason.symbol for reason in found] == expected


def test_only_the_inserted_text_is_checked(resolver: ModuleResolver) -> None:
    buffer = SERVICE.replace("later = total * 2", "later = total * undefined_elsewhere")
    assert symbols(buffer, "<CURSOR>", method("print(total)"), resolver) == []


def test_buffer_broken_elsewhere(resolver: ModuleResolver) -> None:
    broken = SERVICE.replace("    return counts\n", "    return counts(\n", 1)
    broken = broken.replace("        return len(self._orders)\n", "        return self.\n", 1)
    assert symbols(broken, "<CURSOR>", method("self.nonexistent()"), resolver) == [
        "self.nonexistent"
    ]
    assert symbols(broken, "<CURSOR>", method("self.record(total)"), resolver) == []
    inside = SERVICE.replace("        total = 0.0\n", "        total = (0.0\n", 1)
    assert symbols(inside, "<CURSOR>", method("json.loads_file(total)"), resolver) == [
        "json.loads_file"
    ]


def test_inserted_text_that_does_not_parse_is_left_to_the_syntax_check(
    resolver: ModuleResolver,
) -> None:
    assert symbols(SERVICE, "<CURSOR>", method("x = os.path.joinpath("), resolver) == []
    assert symbols(SERVICE, "<CURSOR>", method("if json.loads_file(x)"), resolver) == []


def test_string_at_column_zero_does_not_confuse_the_split(resolver: ModuleResolver) -> None:
    buffer = SERVICE.replace(
        "        total = 0.0\n",
        '        query = """\nselect total\nfrom orders\n"""\n        total = 0.0\n',
    )
    assert symbols(buffer, "<CURSOR>", method("self.nonexistent()"), resolver) == [
        "self.nonexistent"
    ]
    assert symbols(buffer, "<CURSOR>", method("print(query, total)"), resolver) == []


def test_repository_symbols_rescue_what_the_resolver_cannot_see(resolver: ModuleResolver) -> None:
    known = {"repo_only", "repo_only.tools", "repo_only.tools.helper", "shop.cart.Cart.discount"}

    def known_symbols(dotted: str) -> bool | None:
        return dotted in known

    text = method("from repo_only.tools import helper", "import repo_only.tools")
    assert symbols(SERVICE, "<CURSOR>", text, resolver, known_symbols=known_symbols) == []
    text = method("from repo_only.tools import nope")
    found = symbols(SERVICE, "<CURSOR>", text, resolver, known_symbols=known_symbols)
    assert found == ["repo_only.tools.nope"]
    text = method("cart.discount(0.1)")  # added to Cart in an unsaved buffer the index has seen
    assert symbols(SERVICE, "<CURSOR>", text, resolver, known_symbols=known_symbols) == []
    assert symbols(SERVICE, "<CURSOR>", text, resolver) == ["cart.discount"]


def test_unknown_star_import_opens_the_module(resolver: ModuleResolver) -> None:
    buffer = SERVICE.replace("import click\n", "import click\nfrom nowhere_at_all import *\n")
    assert symbols(buffer, "<CURSOR>", method("print(anything_from_the_star)"), resolver) == []


def test_module_from_path(resolver: ModuleResolver, repo: Path) -> None:
    text = method("from .cart import Cart as Again", "from .base import Missing")
    found = symbols(
        SERVICE, "<CURSOR>", text, resolver, path=repo / "shop" / "orders.py", module=None
    )
    assert found == ["shop.base.Missing"]


def test_empty_and_whitespace_insertions(resolver: ModuleResolver) -> None:
    assert symbols(SERVICE, "<CURSOR>", "\n", resolver) == []
    assert symbols(SERVICE, "<CURSOR>", method("# just a comment"), resolver) == []


REAL_CODE_PATTERNS = """\
import typing
from abc import ABC
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import not_installed_anywhere


class Shape(ABC):
    def describe(self) -> str:
        return self._kind


class Circle(Shape):
    _kind = "circle"


class Sized(Protocol):
    def area(self) -> float:
        return self.width * self.height


class ReprMixin:
    def __repr__(self) -> str:
        return f"{self.name}"


class Visitor:
    def _simple(self, node):
        return node

    # <CLASS-BODY>


def handle(exc: Exception, cls: type) -> None:
    # <HANDLE>
    pass
"""


@pytest.mark.parametrize(
    ("marker", "text"),
    [
        ("<HANDLE>", function("if isinstance(exc, KeyError):", "    print(exc.custom_field)")),
        ("<HANDLE>", function("print(cls.__args__, cls.anything)")),
        (
            "<HANDLE>",
            function("try:", "    import optional_dep", "except ImportError:", "    pass"),
        ),
        ("<HANDLE>", function("if sys.version_info >= (3, 14):", "    import annotationlib")),
        ("<HANDLE>", function("import _overlapped", "import winreg")),
        ("<HANDLE>", function("from typing import _GenericAlias", "typing._SpecialForm")),
        ("<HANDLE>", function("Sequence.register(list)")),
        ("<HANDLE>", function("from multiprocessing.util import close_fds")),
        ("<CLASS-BODY>", "    visit_Name = visit_Call = _simple\n"),
        (
            "<CLASS-BODY>",
            "    def visit_Expr(self, node):\n        return super().visit_Expr(node)\n",
        ),
    ],
)
def test_real_code_patterns_are_not_flagged(
    resolver: ModuleResolver, marker: str, text: str
) -> None:
    buffer = REAL_CODE_PATTERNS.replace("import typing\n", "import sys\nimport typing\n")
    assert symbols(buffer, marker, text, resolver) == []


def test_base_class_may_use_attributes_its_subclasses_define(resolver: ModuleResolver) -> None:
    text = "    def shout(self) -> str:\n        return self._kind.upper() + self._nothing\n"
    buffer = REAL_CODE_PATTERNS.replace(
        "        return self._kind\n", "        return self._kind\n\n    # <SHAPE>\n"
    )
    assert symbols(buffer, "<SHAPE>", text, resolver) == ["self._nothing"]


def test_protocols_and_mixins_use_attributes_of_their_users(resolver: ModuleResolver) -> None:
    buffer = REAL_CODE_PATTERNS.replace(
        "        return self.width * self.height\n",
        "        return self.width * self.height\n    # <PROTOCOL>\n",
    )
    text = "    def perimeter(self) -> float:\n        return 2 * (self.width + self.height)\n"
    assert symbols(buffer, "<PROTOCOL>", text, resolver) == []


def test_edit_inside_a_large_class_sees_the_whole_class(resolver: ModuleResolver) -> None:
    methods = "".join(
        f"    def method_{index}(self) -> int:\n        self.value_{index} = {index}\n"
        f"        return self.value_{index}\n\n"
        for index in range(60)
    )
    buffer = (
        "import json\n\n\nclass Big:\n    LIMIT = 3\n\n"
        + methods
        + "    def target(self) -> None:\n        # <BIG>\n        pass\n\n"
        + "    class Inner:\n        size = 1\n"
    )
    good = method("self.method_0()", "print(self.value_59, self.LIMIT, Big.Inner.size)")
    assert symbols(buffer, "<BIG>", good, resolver) == []
    bad = method("self.method_60()", "json.loads_file(self.LIMIT)", "Big.Inner.width")
    assert symbols(buffer, "<BIG>", bad, resolver) == [
        "self.method_60",
        "json.loads_file",
        "Big.Inner.width",
    ]
    new_method = "    def extra(self) -> int:\n        return self.value_1 + self.nope\n\n"
    assert symbols(buffer, "<BIG>", new_method, resolver) == ["self.nope"]


def test_missing_package_the_buffer_already_uses_is_not_flagged(resolver: ModuleResolver) -> None:
    buffer = SERVICE.replace("import click\n", "import click\nimport trio_not_here\n")
    text = method("from trio_not_here.lowlevel import current_task", "import other_not_here")
    assert symbols(buffer, "<CURSOR>", text, resolver) == ["other_not_here"]


def test_module_level_instances(resolver: ModuleResolver) -> None:
    buffer = SERVICE.replace(
        "# <MODULE>\n",
        "CART = Cart()\n\n\ndef setup() -> None:\n    CART.extra = 1\n\n\n# <MODULE>\n",
    )
    text = "print(CART.items, CART.extra)\nCART.missing_thing()\n"
    assert symbols(buffer, "<MODULE>", text, resolver) == ["CART.missing_thing"]


TYPED_FIELDS = """\
from dataclasses import dataclass
from typing import Protocol

from shop.cart import Cart


class Backend(Protocol):
    def complete(self, prompt: str) -> str: ...


@dataclass
class Request:
    cart: Cart | None
    label: str = ""


class Service:
    def __init__(self, backend: Backend, request: Request) -> None:
        self.backend = backend
        self.request = request
        self.count: int = 0

    @property
    def current(self) -> Cart:
        return Cart()

    def run(self) -> None:
        # <RUN>
        pass
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (method("self.backend.generate('x')"), ["self.backend.generate"]),
        (method("self.request.cart.no_such_method()"), ["self.request.cart.no_such_method"]),
        (method("self.current.no_such_method()"), ["self.current.no_such_method"]),
        (method("self.backend.complete('x')", "self.request.cart.add(1)"), []),
        (method("self.current.items.append(1)", "self.request.label.upper()"), []),
        (method("if isinstance(self.request.cart, object):", "    self.request.cart.x"), []),
    ],
)
def test_declared_attribute_types(resolver: ModuleResolver, text: str, expected: list) -> None:
    assert symbols(TYPED_FIELDS, "<RUN>", text, resolver) == expected
