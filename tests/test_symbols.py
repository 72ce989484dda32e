"""Symbol tables: Python definitions, imports and exports; other languages; module names."""

from __future__ import annotations

import pytest

from indexer.chunking import parse_file
from indexer.languages import language_for
from indexer.records import ImportRecord, Symbol
from indexer.symbols import python_module_names
from tests.test_chunking import CART, SNIPPETS

INVENTORY = '''\
"""Inventory: stock levels per warehouse."""

from __future__ import annotations

import enum
import typing as t
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TypeVar, overload

try:
    import orjson as json_impl
except ImportError:  # the stdlib is slower but always there
    import json as json_impl

from ..core import registry
from ..core.models import *
from .cart import Cart as ShopCart, Item

__all__ = ["Warehouse", "StockLevel"]
__all__ += ["restock"]

T = TypeVar("T")
StockMap = dict[str, int]
type SkuList = list[str]
DEFAULT_WAREHOUSE, FALLBACK_WAREHOUSE = "main", "backup"
_registry_key: str = "inventory"


class StockLevel(enum.Enum):
    """How much of an item is left."""

    OUT = 0
    LOW = 1
    PLENTY = 2


@dataclass
class Reservation:
    sku: str
    quantity: int
    holder: str = "anonymous"
    notes: list[str] = field(default_factory=list)


class Warehouse:
    """A place that holds stock."""

    capacity: int = 10_000
    LOW_WATERMARK = 5

    def __init__(self, name: str) -> None:
        self.name = name
        self._stock: StockMap = defaultdict(int)

    @property
    def size(self) -> int:
        """Units held."""
        return sum(self._stock.values())

    @size.setter
    def size(self, value: int) -> None:
        raise AttributeError("size is computed")

    @overload
    def level(self, sku: str) -> StockLevel: ...
    @overload
    def level(self, sku: str, default: T) -> StockLevel | T: ...
    def level(self, sku, default=None):
        """Classify the stock of one SKU."""
        count = self._stock.get(sku, 0)
        if count == 0:
            return default if default is not None else StockLevel.OUT
        return StockLevel.LOW if count < self.LOW_WATERMARK else StockLevel.PLENTY

    def reserve(self, sku: str, quantity: int, *, holder: str = "anonymous") -> Reservation:
        self.last_reservation = Reservation(sku, quantity, holder)
        self._stock[sku] -= quantity
        return self.last_reservation

    @classmethod
    def from_json(cls, payload: bytes) -> Warehouse:
        data = json_impl.loads(payload)
        warehouse = cls(data["name"])
        for sku, count in data["stock"].items():
            warehouse._stock[sku] = count
        registry.add(warehouse)
        return warehouse


def restock(
    warehouse: Warehouse,
    items: t.Iterable[Item],
    *,
    multiplier: int = 1,
) -> int:
    """Add every item's quantity to the warehouse; return units added."""

    def scaled(item: Item) -> int:
        return item.quantity * multiplier

    class Batch:
        size = 0

    added = 0
    for item in items:
        warehouse._stock[item.sku] += scaled(item)
        added += scaled(item)
    return added


def _check(cart: ShopCart) -> bool:
    return all(line.quantity > 0 for line in cart)
'''

M = "shop.inventory"
W = f"{M}.Warehouse"


def table(symbols: list[Symbol]) -> list[tuple[int, str, str, bool]]:
    return [(s.line, s.kind, s.qualname, s.exported) for s in symbols]


def by_qualname(symbols: list[Symbol]) -> dict[str, Symbol]:
    return {s.qualname: s for s in symbols}


def test_python_symbol_table() -> None:
    parsed = parse_file("src/shop/inventory.py", INVENTORY, "python", module=M)
    assert parsed.module == M
    assert table(parsed.symbols) == [
        (1, "module", M, True),
        (20, "variable", f"{M}.__all__", False),
        (23, "type", f"{M}.T", True),  # TypeVar
        (24, "variable", f"{M}.StockMap", True),
        (25, "type", f"{M}.SkuList", True),  # `type` statement
        (26, "constant", f"{M}.DEFAULT_WAREHOUSE", True),  # tuple target
        (26, "constant", f"{M}.FALLBACK_WAREHOUSE", True),
        (27, "variable", f"{M}._registry_key", False),
        (30, "enum", f"{M}.StockLevel", True),
        (33, "constant", f"{M}.StockLevel.OUT", True),
        (34, "constant", f"{M}.StockLevel.LOW", True),
        (35, "constant", f"{M}.StockLevel.PLENTY", True),
        (39, "class", f"{M}.Reservation", True),  # the class line, not the decorator
        (40, "attribute", f"{M}.Reservation.sku", True),  # dataclass fields
        (41, "attribute", f"{M}.Reservation.quantity", True),
        (42, "attribute", f"{M}.Reservation.holder", True),
        (43, "attribute", f"{M}.Reservation.notes", True),
        (46, "class", W, True),
        (49, "attribute", f"{W}.capacity", True),
        (50, "constant", f"{W}.LOW_WATERMARK", True),
        (52, "method", f"{W}.__init__", True),
        (53, "attribute", f"{W}.name", True),  # self.name = ...
        (54, "attribute", f"{W}._stock", False),
        (57, "method", f"{W}.size", True),  # getter; the setter is the same name
        (66, "method", f"{W}.level", True),  # first overload
        (76, "method", f"{W}.reserve", True),
        (77, "attribute", f"{W}.last_reservation", True),  # assigned outside __init__
        (82, "method", f"{W}.from_json", True),
        (91, "function", f"{M}.restock", True),
        (99, "function", f"{M}.restock.scaled", False),  # nested: not importable
        (102, "class", f"{M}.restock.Batch", False),
        (103, "attribute", f"{M}.restock.Batch.size", False),
        (112, "function", f"{M}._check", False),
    ]
    assert all(s.path == "src/shop/inventory.py" and s.language == "python" for s in parsed.symbols)


def test_python_signatures_and_docstrings() -> None:
    symbols = by_qualname(parse_file("inventory.py", INVENTORY, "python", module=M).symbols)
    assert symbols[M].doc == "Inventory: stock levels per warehouse."
    assert symbols[f"{M}.restock"].signature == (
        "def restock(warehouse: Warehouse, items: t.Iterable[Item], *, multiplier: int = 1) -> int"
    )
    assert (
        symbols[f"{M}.restock"].doc
        == "Add every item's quantity to the warehouse; return units added."
    )
    assert symbols[f"{M}.StockLevel"].signature == "class StockLevel(enum.Enum)"
    assert symbols[f"{W}.size"].doc == "Units held."
    # The overloads have no docstring; the implementation's is kept for the one symbol.
    assert symbols[f"{W}.level"].signature == "def level(self, sku: str) -> StockLevel"
    assert symbols[f"{W}.level"].doc == "Classify the stock of one SKU."
    assert symbols[f"{W}._stock"].signature == "self._stock: StockMap = defaultdict(int)"
    assert symbols[f"{M}.Reservation.notes"].signature == (
        "notes: list[str] = field(default_factory=list)"
    )
    cart = by_qualname(parse_file("cart.py", CART, "python", module="shop.cart").symbols)
    assert cart["shop.cart.checkout"].signature.startswith("async def checkout(cart: Cart,")
    assert cart["shop.cart.checkout.publish"].kind == "function"
    assert cart["shop.cart.PriceSource"].kind == "interface"  # a Protocol
    assert cart["shop.cart.Cart"].doc == "A customer's cart."
    assert cart["shop.cart.Cart.Discount.percent"].kind == "attribute"
    assert {"shop.cart.Cart.created", "shop.cart.Cart.updated"} <= set(cart)


def test_long_signatures_are_one_line_and_capped() -> None:
    params = ",\n    ".join(f"argument_number_{i}: int = {i}" for i in range(20))
    text = f"def wide(\n    {params},\n) -> None:\n    pass\n"
    symbol = by_qualname(parse_file("w.py", text, "python", module="w").symbols)["w.wide"]
    assert "\n" not in symbol.signature and "  " not in symbol.signature
    assert symbol.signature.startswith("def wide(argument_number_0: int = 0, argument_number_1")
    assert len(symbol.signature) == 200


def test_python_imports() -> None:
    parsed = parse_file("shop/inventory.py", INVENTORY, "python", module=M)
    p = "shop/inventory.py"
    assert parsed.imports == [
        ImportRecord(p, "__future__", "annotations", None, 3),
        ImportRecord(p, "enum", None, None, 5),
        ImportRecord(p, "typing", None, "t", 6),
        ImportRecord(p, "collections", "defaultdict", None, 7),
        ImportRecord(p, "dataclasses", "dataclass", None, 8),
        ImportRecord(p, "dataclasses", "field", None, 8),
        ImportRecord(p, "typing", "TypeVar", None, 9),
        ImportRecord(p, "typing", "overload", None, 9),
        ImportRecord(p, "orjson", None, "json_impl", 12),  # both branches of the try
        ImportRecord(p, "json", None, "json_impl", 14),
        ImportRecord(p, "core", "registry", None, 16, level=2),
        ImportRecord(p, "core.models", "*", None, 17, level=2),
        ImportRecord(p, "cart", "Cart", "ShopCart", 18, level=1),
        ImportRecord(p, "cart", "Item", None, 18, level=1),
    ]
    more = "import a.b as c, d.e\nfrom . import sibling as sib\n\ndef f():\n    import os.path\n"
    assert [
        (i.module, i.name, i.alias, i.level) for i in parse_file("m.py", more, "python").imports
    ] == [
        ("a.b", None, "c", 0),
        ("d.e", None, None, 0),
        ("", "sibling", "sib", 1),
        ("os.path", None, None, 0),  # imports inside functions count too
    ]


def test_exports_follow_a_literal_all_or_public_names() -> None:
    assert parse_file("i.py", INVENTORY, "python", module=M).exports == [
        "Warehouse",
        "StockLevel",
        "restock",
    ]
    assert parse_file("c.py", CART, "python", module="shop.cart").exports == [
        "Cart",
        "Item",
        "checkout",
        "DEFAULT_CURRENCY",
    ]
    plain = (
        "import os\nfrom x import y\nVALUE = 1\n_hidden = 2\n\n"
        "def run():\n    pass\n\nclass _Impl:\n    pass\n"
    )
    parsed = parse_file("p.py", plain, "python", module="p")
    assert parsed.exports == ["VALUE", "run"]  # no imports, nothing underscore-prefixed
    dynamic = "from .a import names\n__all__ = names + ['extra']\n\ndef extra():\n    pass\n"
    assert parse_file("d.py", dynamic, "python", module="d").exports == ["extra"]
    listed = (
        "__all__ = ('_private_api',)\n__all__.append('VERSION')\n\ndef _private_api():\n    pass\n"
    )
    parsed = parse_file("l.py", listed, "python", module="l")
    assert parsed.exports == ["_private_api", "VERSION"]
    assert by_qualname(parsed.symbols)["l._private_api"].exported


def test_module_name_comes_from_the_path_when_not_given() -> None:
    parsed = parse_file("src/shop/cart.py", "x = 1\n", "python")
    assert parsed.module == "cart"  # without the package structure, only the stem is known
    assert [s.qualname for s in parsed.symbols] == ["cart", "cart.x"]
    assert parse_file("notes.md", "# hi\n", "markdown").module is None


def test_python_module_names() -> None:
    paths = [
        "src/shop/__init__.py",
        "src/shop/cart.py",
        "src/shop/payments/__init__.py",
        "src/shop/payments/stripe.py",
        "src/shop/payments/stripe.pyi",
        "pkg/__init__.py",
        "pkg/core.py",
        "tool.py",
        "scripts/deploy.py",  # no __init__.py: a plain script directory
        "nspkg/sub/__init__.py",  # namespace package above: not followed
        "nspkg/sub/mod.py",
        "README.md",
        "./rel/__init__.py",
    ]
    assert python_module_names(paths) == {
        "src/shop/__init__.py": "shop",
        "src/shop/cart.py": "shop.cart",
        "src/shop/payments/__init__.py": "shop.payments",
        "src/shop/payments/stripe.py": "shop.payments.stripe",
        "src/shop/payments/stripe.pyi": "shop.payments.stripe",
        "pkg/__init__.py": "pkg",
        "pkg/core.py": "pkg.core",
        "tool.py": "tool",
        "scripts/deploy.py": "deploy",
        "nspkg/sub/__init__.py": "sub",
        "nspkg/sub/mod.py": "sub.mod",
        "./rel/__init__.py": "rel",  # keys are the paths as given
    }
    assert python_module_names([]) == {}


EXPECTED_SYMBOLS: dict[str, list[tuple[int, str, str, bool]]] = {
    "cart.ts": [
        (4, "interface", "Priced", True),
        (8, "type", "Sku", True),
        (10, "enum", "Currency", True),
        (16, "class", "Cart", True),
        (17, "attribute", "Cart.items", False),  # private
        (19, "method", "Cart.constructor", True),
        (21, "method", "Cart.add", True),
        (25, "method", "Cart.price", True),
        (30, "function", "total", True),  # exported arrow function
        (33, "function", "helper", False),  # not exported
    ],
    "cart.js": [
        (6, "class", "Cart", False),  # CommonJS: module.exports is not read
        (7, "attribute", "Cart.#lines", False),
        (9, "method", "Cart.add", True),
        (13, "method", "Cart.size", True),
        (18, "function", "total", False),
    ],
    "cart.go": [
        (6, "class", "shop.Cart", True),
        (12, "method", "shop.Cart.Add", True),
        (16, "function", "shop.NewCart", True),
        (20, "constant", "shop.MaxLines", True),
    ],
    "cart.rs": [
        (5, "class", "Cart", True),
        (11, "method", "Cart.add", True),
        (15, "method", "Cart.len", True),
        (20, "interface", "Priced", True),
        (21, "method", "Priced.price", True),
        (24, "enum", "Currency", True),
    ],
    "Cart.java": [
        (7, "class", "com.shop.Cart", True),
        (8, "attribute", "com.shop.Cart.lines", False),
        (11, "method", "com.shop.Cart.add", True),
        (15, "method", "com.shop.Cart.size", True),
        (19, "enum", "com.shop.Cart.Currency", True),
        (19, "constant", "com.shop.Cart.Currency.EUR", True),
        (19, "constant", "com.shop.Cart.Currency.USD", True),
        (22, "interface", "com.shop.Priced", True),
        (23, "method", "com.shop.Priced.price", True),
    ],
    "cart.c": [
        (3, "constant", "MAX_LINES", True),
        (6, "class", "line", True),
        (11, "function", "clamp", False),  # static
        (15, "function", "cart_add", True),
    ],
    "cart.cpp": [
        (4, "module", "shop", True),
        (7, "class", "shop.Cart", True),
        (9, "method", "shop.Cart.add", True),
        (15, "attribute", "shop.Cart.lines_", True),
        (18, "method", "shop.Cart.size", True),
    ],
}


@pytest.mark.parametrize("name", sorted(EXPECTED_SYMBOLS))
def test_other_language_symbols(name: str) -> None:
    text, _ = SNIPPETS[name]
    parsed = parse_file(name, text, language_for(name))
    assert table(parsed.symbols) == EXPECTED_SYMBOLS[name]
    assert parsed.imports == [] and parsed.exports == [] and parsed.module is None


def test_other_language_docs_and_signatures() -> None:
    def symbols(name: str) -> dict[str, Symbol]:
        return by_qualname(parse_file(name, SNIPPETS[name][0], language_for(name)).symbols)

    ts = symbols("cart.ts")
    assert ts["Priced"].doc == "Something with a price."  # /** ... */ right above
    assert ts["Cart.add"].signature == "add(sku: Sku, qty = 1): void"
    assert ts["total"].signature == "const total = (carts: Cart[]): Money"
    assert symbols("cart.js")["Cart"].doc == "A shopping cart."  # multi-line JSDoc
    go = symbols("cart.go")
    assert go["shop.Cart.Add"].doc == "Add puts qty of sku in the cart."
    assert go["shop.Cart.Add"].signature == "func (c *Cart) Add(sku string, qty int)"
    assert go["shop.Cart"].signature == "type Cart struct"
    rust = symbols("cart.rs")
    assert rust["Cart"].doc == "A shopping cart."  # /// above the #[derive]
    assert rust["Cart.add"].signature == "pub fn add(&mut self, sku: &str, qty: u32)"
    assert symbols("Cart.java")["com.shop.Cart.add"].doc == "Adds qty of sku."
    assert symbols("cart.c")["line"].doc == "One line of a cart."
    assert symbols("cart.cpp")["shop.Cart.size"].signature == "int Cart::size() const"
    assert symbols("cart.cpp")["shop.Cart"].doc == "A shopping cart."


def test_deeply_nested_python_definitions_fall_back() -> None:
    text = "".join("    " * i + f"def level{i}():\n" for i in range(100)) + "    " * 100 + "pass\n"
    parsed = parse_file("nest.py", text, "python", module="nest")
    assert parsed.fallback_reason == "nesting"
    assert parsed.symbols == [] and parsed.chunks
    shallow = "".join("    " * i + f"def level{i}():\n" for i in range(5)) + "    " * 5 + "pass\n"
    symbols = parse_file("ok.py", shallow, "python", module="ok").symbols
    assert symbols[-1].qualname == "ok.level0.level1.level2.level3.level4"
