"""Chunking with tree-sitter: golden chunks, splitting and merging, coverage, fallbacks."""

from __future__ import annotations

import email
import importlib.util
import json
import random
import threading
from collections.abc import Iterable
from pathlib import Path

import pytest

from indexer.chunking import WINDOW_LINES, WINDOW_OVERLAP, line_windows, parse_file
from indexer.languages import language_for
from indexer.records import Chunk

CART = '''\
"""Shopping cart: items, discounts and checkout totals."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterator, Protocol

from . import events as ev
from .pricing import TaxTable, round_money

__all__ = ["Cart", "Item", "checkout", "DEFAULT_CURRENCY"]

logger = logging.getLogger(__name__)

DEFAULT_CURRENCY = "EUR"
MAX_ITEMS: int = 500
_cache: dict[str, Decimal] = {}


class PriceSource(Protocol):
    """Anything that can price a SKU."""

    def price_of(self, sku: str) -> Decimal: ...


@dataclass(frozen=True)
class Item:
    """One line of a cart."""

    sku: str
    name: str
    unit_price: Decimal
    quantity: int = 1
    tags: tuple[str, ...] = field(default=())

    @property
    def total(self) -> Decimal:
        """Price of the whole line."""
        return self.unit_price * self.quantity

    def with_quantity(self, quantity: int) -> Item:
        return Item(self.sku, self.name, self.unit_price, quantity, self.tags)


class Cart:
    """A customer's cart.

    Carts are cheap to create; totals are computed on demand.
    """

    currency = DEFAULT_CURRENCY

    class Discount:
        """A percentage off the subtotal."""

        def __init__(self, code: str, percent: int) -> None:
            self.code = code
            self.percent = percent

        def apply(self, amount: Decimal) -> Decimal:
            return amount * (100 - self.percent) / 100

    def __init__(self, owner: str, *, items: list[Item] | None = None) -> None:
        self.owner = owner
        self._items: dict[str, Item] = {i.sku: i for i in items or []}
        self.discounts: list[Cart.Discount] = []
        self.created, self.updated = 0.0, 0.0

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self._items.values())

    def add(self, item: Item, quantity: int = 1) -> None:
        """Add ``quantity`` of ``item``, merging with an existing line."""
        if len(self._items) >= MAX_ITEMS:
            raise ValueError("cart is full")
        current = self._items.get(item.sku)
        if current is not None:
            quantity += current.quantity
        self._items[item.sku] = item.with_quantity(quantity)
        logger.debug("added %s x%d", item.sku, quantity)

    def remove(self, sku: str) -> Item:
        """Remove a line and return it."""
        return self._items.pop(sku)

    @property
    def subtotal(self) -> Decimal:
        return sum((i.total for i in self), Decimal(0))

    def total(self, taxes: TaxTable) -> Decimal:
        """Subtotal after discounts, plus tax."""
        amount = self.subtotal
        for discount in self.discounts:
            amount = discount.apply(amount)
        return round_money(amount * (1 + taxes.rate_for(self.currency)))

    @staticmethod
    def _key(sku: str) -> str:
        return sku.strip().upper()

    @classmethod
    def from_skus(cls, owner: str, skus: list[str], prices: PriceSource) -> Cart:
        cart = cls(owner)
        for sku in skus:
            cart.add(Item(sku, sku.title(), prices.price_of(sku)))
        return cart


async def checkout(cart: Cart, taxes: TaxTable, *, timeout: float = 5.0) -> Decimal:
    """Charge the cart's total and publish the order event."""

    async def publish(total: Decimal) -> None:
        await ev.publish("order", {"owner": cart.owner, "total": str(total)})

    total = cart.total(taxes)
    await asyncio.wait_for(publish(total), timeout)
    return total


def _audit(cart: Cart) -> list[str]:
    # Lines are reported in insertion order, which dicts keep.
    return [f"{i.sku}:{i.quantity}" for i in cart]


if __name__ == "__main__":
    demo = Cart("demo")
    demo.add(Item("A1", "Apple", Decimal("0.50")), 3)
    print(_audit(demo))
'''

Row = tuple[int, int, str, str, str]


def rows(chunks: Iterable[Chunk]) -> list[Row]:
    return [(c.start_line, c.end_line, c.kind, c.symbol, c.scope) for c in chunks]


def assert_coverage(text: str, chunks: list[Chunk]) -> None:
    """Every non-blank line is in a chunk, chunks are ordered, and their text is the file's."""
    lines = text.split("\n")
    covered: set[int] = set()
    for chunk in chunks:
        assert 1 <= chunk.start_line <= chunk.end_line <= len(lines), chunk
        assert chunk.text == "\n".join(lines[chunk.start_line - 1 : chunk.end_line])
        covered.update(range(chunk.start_line, chunk.end_line + 1))
    missing = [n for n, line in enumerate(lines, 1) if line.strip() and n not in covered]
    assert not missing, f"uncovered lines {missing[:10]}"
    starts = [c.start_line for c in chunks]
    assert starts == sorted(starts)


def test_python_golden_chunks() -> None:
    parsed = parse_file("shop/cart.py", CART, "python", module="shop.cart")
    m, cart = "shop.cart", "shop.cart.Cart"
    assert parsed.fallback_reason is None
    assert rows(parsed.chunks) == [
        (1, 20, "module", "", m),  # docstring, imports, __all__, constants
        (23, 26, "class", f"{m}.PriceSource", m),  # header + tiny method merged
        (29, 37, "class", f"{m}.Item", m),  # decorator, docstring and dataclass fields
        (39, 45, "method", f"{m}.Item.total", f"{m}.Item"),  # property + tiny with_quantity
        (48, 54, "class", cart, m),
        (56, 64, "class", f"{cart}.Discount", cart),  # nested class, tiny parts merged
        (66, 76, "method", f"{cart}.__init__", cart),  # + __len__, __iter__
        (78, 94, "method", f"{cart}.add", cart),  # + remove, subtotal
        (96, 105, "method", f"{cart}.total", cart),  # + _key
        (107, 112, "method", f"{cart}.from_skus", cart),
        (115, 128, "function", f"{m}.checkout", m),  # async def + tiny _audit
        (131, 134, "module", "", m),  # if __name__ == "__main__"
    ]
    assert_coverage(CART, parsed.chunks)
    by_symbol = {c.symbol: c for c in parsed.chunks}
    assert by_symbol[f"{m}.Item"].text.startswith("@dataclass(frozen=True)\nclass Item:")
    assert '"""Add ``quantity``' in by_symbol[f"{cart}.add"].text
    assert all(c.language == "python" and c.path == "shop/cart.py" for c in parsed.chunks)


def test_oversized_definitions_split_at_statements() -> None:
    parsed = parse_file(
        "shop/cart.py", CART, "python", module="shop.cart", max_chunk_lines=8, min_chunk_lines=3
    )
    m, cart = "shop.cart", "shop.cart.Cart"
    got = rows(parsed.chunks)
    assert all(end - start < 8 for start, end, *_ in got)
    assert_coverage(CART, parsed.chunks)
    # The signature stays with the first piece; the rest are blocks scoped to the function.
    assert (78, 82, "method", f"{cart}.add", cart) in got
    assert (83, 86, "block", "", f"{cart}.add") in got
    assert (115, 119, "function", f"{m}.checkout", m) in got
    assert (121, 123, "block", "", f"{m}.checkout") in got
    # A class header too long for one chunk: the definition with the first fields, then
    # the rest of the fields (pieces are balanced: 5 + 4 lines, not 8 + 1).
    assert (29, 33, "class", f"{m}.Item", m) in got
    assert (34, 37, "class", "", f"{m}.Item") in got
    # Module-level statements are cut between statements, never inside one.
    assert [r for r in got if r[2] == "module"] == [
        (1, 7, "module", "", m),
        (8, 14, "module", "", m),
        (16, 20, "module", "", m),
        (131, 134, "module", "", m),
    ]


def test_huge_statement_is_split_inside_and_by_lines() -> None:
    body = "\n".join(f"    'key{i}': {i}," for i in range(300))
    text = f"def build():\n    table = {{\n{body}\n    }}\n    return table\n"
    parsed = parse_file("t.py", text, "python", max_chunk_lines=50)
    assert parsed.fallback_reason is None
    assert all(c.end_line - c.start_line < 50 for c in parsed.chunks)
    assert parsed.chunks[0].kind == "function"
    assert parsed.chunks[0].text.startswith("def build():")
    assert {c.kind for c in parsed.chunks[1:]} == {"block"}
    assert_coverage(text, parsed.chunks)


def test_tiny_chunks_merge_only_within_one_body() -> None:
    text = (
        "def a():\n    return 1\n\n"
        "def b():\n    return 2\n\n"
        "class K:\n    def m(self):\n        return 3\n\n"
        "    def n(self):\n        return 4\n"
    )
    parsed = parse_file("k.py", text, "python", module="k")
    assert rows(parsed.chunks) == [
        (1, 5, "function", "k.a", "k"),  # a and b merged: same body
        (7, 12, "class", "k.K", "k"),  # the class line and its tiny methods
    ]
    unmerged = parse_file("k.py", text, "python", module="k", min_chunk_lines=1)
    assert [c.symbol for c in unmerged.chunks] == ["k.a", "k.b", "k.K", "k.K.m", "k.K.n"]


SNIPPETS: dict[str, tuple[str, list[Row]]] = {
    "cart.ts": (
        """import { Money } from "./money";

/** Something with a price. */
export interface Priced {
  price(): Money;
}

export type Sku = string;

export enum Currency {
  EUR,
  USD,
}

@sealed
export class Cart implements Priced {
  private items: Map<Sku, number> = new Map();

  constructor(readonly owner: string) {}

  add(sku: Sku, qty = 1): void {
    this.items.set(sku, (this.items.get(sku) ?? 0) + qty);
  }

  price(): Money {
    return Money.zero();
  }
}

export const total = (carts: Cart[]): Money =>
  carts.reduce((sum, c) => sum.plus(c.price()), Money.zero());

function helper(): void {}
""",
        [
            (1, 1, "module", "", ""),
            (3, 6, "class", "Priced", ""),
            (8, 8, "class", "Sku", ""),
            (10, 13, "class", "Currency", ""),
            (15, 17, "class", "Cart", ""),
            (19, 19, "method", "Cart.constructor", "Cart"),
            (21, 23, "method", "Cart.add", "Cart"),
            (25, 28, "method", "Cart.price", "Cart"),
            (30, 31, "function", "total", ""),
            (33, 33, "function", "helper", ""),
        ],
    ),
    "cart.js": (
        """const { Money } = require("./money");

/**
 * A shopping cart.
 */
class Cart {
  #lines = new Map();

  add(sku, qty = 1) {
    this.#lines.set(sku, (this.#lines.get(sku) ?? 0) + qty);
  }

  get size() {
    return this.#lines.size;
  }
}

const total = (carts) =>
  carts.reduce((sum, c) => sum + c.size, 0);

module.exports = { Cart, total };
""",
        [
            (1, 1, "module", "", ""),
            (3, 7, "class", "Cart", ""),
            (9, 11, "method", "Cart.add", "Cart"),
            (13, 16, "method", "Cart.size", "Cart"),
            (18, 19, "function", "total", ""),
            (21, 21, "module", "", ""),
        ],
    ),
    "cart.go": (
        """package shop

import "fmt"

// Cart holds the lines of one order.
type Cart struct {
\tOwner string
\tLines map[string]int
}

// Add puts qty of sku in the cart.
func (c *Cart) Add(sku string, qty int) {
\tc.Lines[sku] += qty
}

func NewCart(owner string) *Cart {
\treturn &Cart{Owner: owner, Lines: map[string]int{}}
}

const MaxLines = 100
""",
        [
            (1, 3, "module", "", "shop"),
            (5, 9, "class", "shop.Cart", "shop"),
            (11, 14, "method", "shop.Cart.Add", "shop.Cart"),
            (16, 18, "function", "shop.NewCart", "shop"),
            (20, 20, "module", "", "shop"),
        ],
    ),
    "cart.rs": (
        """use std::collections::HashMap;

/// A shopping cart.
#[derive(Debug, Default)]
pub struct Cart {
    lines: HashMap<String, u32>,
}

impl Cart {
    /// Adds `qty` of `sku`.
    pub fn add(&mut self, sku: &str, qty: u32) {
        *self.lines.entry(sku.to_string()).or_insert(0) += qty;
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }
}

pub trait Priced {
    fn price(&self) -> u64;
}

pub enum Currency {
    Eur,
    Usd,
}
""",
        [
            (1, 1, "module", "", ""),
            (3, 7, "class", "Cart", ""),  # doc comment and attribute stay with the struct
            (9, 9, "class", "", ""),  # `impl Cart {` defines no new name
            (10, 13, "method", "Cart.add", "Cart"),
            (15, 18, "method", "Cart.len", "Cart"),
            (20, 20, "class", "Priced", ""),
            (21, 22, "method", "Priced.price", "Priced"),
            (24, 27, "class", "Currency", ""),
        ],
    ),
    "Cart.java": (
        """package com.shop;

import java.util.HashMap;
import java.util.Map;

/** A shopping cart. */
public class Cart {
    private final Map<String, Integer> lines = new HashMap<>();

    /** Adds qty of sku. */
    public void add(String sku, int qty) {
        lines.merge(sku, qty, Integer::sum);
    }

    public int size() {
        return lines.size();
    }

    enum Currency { EUR, USD }
}

interface Priced {
    long price();
}
""",
        [
            (1, 4, "module", "", "com.shop"),
            (6, 8, "class", "com.shop.Cart", "com.shop"),
            (10, 13, "method", "com.shop.Cart.add", "com.shop.Cart"),
            (15, 17, "method", "com.shop.Cart.size", "com.shop.Cart"),
            (19, 20, "class", "com.shop.Cart.Currency", "com.shop.Cart"),
            (22, 22, "class", "com.shop.Priced", "com.shop"),
            (23, 24, "method", "com.shop.Priced.price", "com.shop.Priced"),
        ],
    ),
    "cart.c": (
        """#include <stdlib.h>

#define MAX_LINES 100

/* One line of a cart. */
struct line {
    const char *sku;
    int qty;
};

static int clamp(int qty) {
    return qty > MAX_LINES ? MAX_LINES : qty;
}

int cart_add(struct line *lines, int n, const char *sku, int qty) {
    lines[n].sku = sku;
    lines[n].qty = clamp(qty);
    return n + 1;
}
""",
        [
            (1, 3, "module", "", ""),
            (5, 9, "class", "line", ""),
            (11, 13, "function", "clamp", ""),
            (15, 19, "function", "cart_add", ""),
        ],
    ),
    "cart.cpp": (
        """#include <map>
#include <string>

namespace shop {

// A shopping cart.
class Cart {
 public:
  void add(const std::string& sku, int qty) {
    lines_[sku] += qty;
  }
  int size() const;

 private:
  std::map<std::string, int> lines_;
};

int Cart::size() const {
  return static_cast<int>(lines_.size());
}

}  // namespace shop
""",
        [
            (1, 2, "module", "", ""),
            (4, 4, "module", "shop", ""),
            (6, 8, "class", "shop.Cart", "shop"),
            (9, 11, "method", "shop.Cart.add", "shop.Cart"),
            (12, 16, "class", "", "shop.Cart"),  # declarations after the method
            (18, 22, "method", "shop.Cart.size", "shop.Cart"),  # out-of-class definition
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(SNIPPETS))
def test_other_languages_golden_chunks(name: str) -> None:
    text, expected = SNIPPETS[name]
    parsed = parse_file(name, text, language_for(name), min_chunk_lines=1)
    assert parsed.fallback_reason is None
    assert rows(parsed.chunks) == expected
    assert_coverage(text, parsed.chunks)


def test_tsx_and_header_files_use_their_grammars() -> None:
    tsx = "export function Hello({ name }: Props) {\n  return <b>Hi {name}</b>;\n}\n"
    parsed = parse_file("hello.tsx", tsx, "tsx")
    assert rows(parsed.chunks) == [(1, 3, "function", "Hello", "")]
    header = "#ifndef CART_H\n#define CART_H\n\nint cart_add(int n);\n\n#endif\n"
    parsed = parse_file("cart.h", header, "c")
    assert parsed.fallback_reason is None
    assert_coverage(header, parsed.chunks)


def test_unknown_languages_use_line_windows() -> None:
    text = "\n".join(f"line {i}" for i in range(1, 101)) + "\n"
    parsed = parse_file("notes.md", text, "markdown")
    assert parsed.fallback_reason is None  # no grammar is not a failure
    step = WINDOW_LINES - WINDOW_OVERLAP
    assert [(c.start_line, c.end_line) for c in parsed.chunks] == [
        (1, WINDOW_LINES),
        (1 + step, step + WINDOW_LINES),
        (1 + 2 * step, 100),
    ]
    assert {c.kind for c in parsed.chunks} == {"window"}
    assert_coverage(text, parsed.chunks)
    assert parse_file("a.txt", "\n\n   \n", "text").chunks == []
    assert [(c.start_line, c.end_line) for c in line_windows("x", "\n\nhi\n\n", "text")] == [(3, 3)]


def test_file_over_the_size_cap_falls_back_to_windows() -> None:
    text = "x = '" + "a" * 5_000 + "'\ny = 2\n"
    parsed = parse_file("big.py", text, "python", module="big", max_parse_bytes=1_000)
    assert parsed.fallback_reason == "size"
    assert parsed.symbols == [] and parsed.module == "big"
    assert [(c.start_line, c.end_line, c.kind) for c in parsed.chunks] == [(1, 2, "window")]


def test_parse_past_the_time_cap_falls_back_and_parser_recovers() -> None:
    text = "def f(x):\n    return x\n" * 5_000
    parsed = parse_file("slow.py", text, "python", parse_timeout_s=0.0)
    assert parsed.fallback_reason == "timeout"
    assert_coverage(text, parsed.chunks)
    # A halted parse must not leak into the next one on the same (per-thread) parser.
    again = parse_file("ok.py", "def g():\n    return 1\n", "python", module="ok")
    assert again.fallback_reason is None
    assert [s.qualname for s in again.symbols] == ["ok", "ok.g"]


def test_extreme_nesting_never_hangs() -> None:
    one_line = "x = " + "[" * 50_000 + "]" * 50_000 + "\n"
    parsed = parse_file("deep.py", one_line, "python")
    assert_coverage(one_line, parsed.chunks)
    many_lines = "x = " + "f(1,\n" * 5_000 + "2" + ")" * 5_000 + "\n"
    parsed = parse_file("deep2.py", many_lines, "python")
    assert parsed.fallback_reason == "nesting"
    assert {c.kind for c in parsed.chunks} == {"window"}
    assert_coverage(many_lines, parsed.chunks)
    namespaces = "namespace a {\n" * 3_000 + "}\n" * 3_000
    parsed = parse_file("deep.cpp", namespaces, "cpp")
    assert parsed.fallback_reason == "nesting"
    assert_coverage(namespaces, parsed.chunks)
    unclosed = "function f() {" + "{" * 100_000
    assert parse_file("open.js", unclosed, "javascript").chunks


def test_syntax_errors_still_chunk_what_parses() -> None:
    text = (
        "import os\n\n\n"
        "def good_one(x):\n    return x + 1\n\n\n"
        "def broken(a, b):\n    return a +\n\n\n"
        "class Fine:\n    def method(self):\n        return 42\n\n"
        "    def other(self) ->:\n        return 1\n\n\n"
        "def good_two():\n"
        '    """Still found."""\n'
        "    return os.sep\n"
    )
    parsed = parse_file("b.py", text, "python", module="b", min_chunk_lines=1)
    assert parsed.fallback_reason is None
    assert [c.symbol for c in parsed.chunks if c.symbol] == [
        "b.good_one",
        "b.broken",
        "b.Fine",
        "b.Fine.method",
        "b.Fine.other",
        "b.good_two",
    ]
    assert_coverage(text, parsed.chunks)
    # An unclosed bracket swallows the rest of the file into one error node: nothing in it
    # parses as a definition any more, but every line is still in a chunk.
    unclosed = "x = foo(1,\n\ndef after():\n    return 2\n\nclass Late:\n    pass\n"
    parsed = parse_file("u.py", unclosed, "python", module="u")
    assert rows(parsed.chunks) == [(1, 7, "module", "", "u")]
    assert_coverage(unclosed, parsed.chunks)


def test_files_cut_mid_edit_keep_coverage_and_size() -> None:
    """Truncated and spliced sources, as an editor holds them while typing."""
    rng = random.Random(38)  # this seed once caught a tail stretched past max lines
    sources = [("python", CART)] + [(language_for(n), t) for n, (t, _) in SNIPPETS.items()]
    for language, text in sources:
        for _ in range(15):
            cut = rng.randrange(len(text))
            edited = text[:cut] + text[cut + rng.randrange(1, 120) :]
            for max_lines in (6, 25):
                parsed = parse_file("e", edited, language, max_chunk_lines=max_lines)
                assert_coverage(edited, parsed.chunks)
                assert all(c.end_line - c.start_line < max_lines + 2 for c in parsed.chunks)


def test_non_ascii_text_keeps_line_numbers() -> None:
    text = (
        '"""Größen und Preise — 価格表 🛒."""\n\n'
        'NAMES = {"ä": "α", "日本": "😀😀😀"}\n\n\n'
        "def café(größe: str) -> str:\n"
        '    """Gibt „größe“ zurück."""\n'
        '    return größe + "€"\n\n\n'
        "class Ω:\n"
        "    def 名前(self) -> str:\n"
        '        return "名前"\n'
    )
    parsed = parse_file("u.py", text, "python", module="u", min_chunk_lines=1)
    assert rows(parsed.chunks) == [
        (1, 3, "module", "", "u"),
        (6, 8, "function", "u.café", "u"),
        (11, 11, "class", "u.Ω", "u"),
        (12, 13, "method", "u.Ω.名前", "u.Ω"),
    ]
    assert parsed.chunks[1].text.startswith("def café(größe: str) -> str:")
    symbols = {s.qualname: s for s in parsed.symbols}
    assert symbols["u.café"].line == 6
    assert symbols["u.café"].doc == "Gibt „größe“ zurück."
    assert symbols["u.Ω.名前"].line == 12


def test_crlf_line_endings() -> None:
    text = "import os\r\n\r\ndef f():\r\n    return os.sep\r\n"
    parsed = parse_file("w.py", text, "python", module="w", min_chunk_lines=1)
    assert rows(parsed.chunks) == [(1, 1, "module", "", "w"), (3, 4, "function", "w.f", "w")]
    assert_coverage(text, parsed.chunks)


def test_empty_and_comment_only_files() -> None:
    empty = parse_file("empty.py", "", "python", module="empty")
    assert empty.chunks == [] and empty.fallback_reason is None
    assert [s.kind for s in empty.symbols] == ["module"]
    comments = "# Copyright the authors.\n#\n# Nothing here yet.\n"
    parsed = parse_file("c.py", comments, "python", module="c")
    assert rows(parsed.chunks) == [(1, 3, "module", "", "c")]
    parsed = parse_file("c.go", "// only a comment\n", "go")
    assert rows(parsed.chunks) == [(1, 1, "module", "", "")]


def test_parsers_are_safe_to_use_from_threads() -> None:
    expected = rows(parse_file("shop/cart.py", CART, "python", module="shop.cart").chunks)
    results: list[list[Row]] = []

    def work() -> None:
        for _ in range(5):
            parsed = parse_file("shop/cart.py", CART, "python", module="shop.cart")
            results.append(rows(parsed.chunks))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 20 and all(r == expected for r in results)


def _real_sources() -> list[Path]:
    """The stdlib's json and email packages, and click when it is installed."""
    roots = [Path(json.__file__).parent, Path(email.__file__).parent]
    click = importlib.util.find_spec("click")
    if click is not None and click.origin:
        roots.append(Path(click.origin).parent)
    return [p for root in roots for p in sorted(root.rglob("*.py"))]


def test_real_packages_parse_with_full_coverage() -> None:
    paths = _real_sources()
    assert len(paths) > 20
    kinds: set[str] = set()
    for path in paths:
        text = path.read_text(encoding="utf-8")
        parsed = parse_file(str(path), text, "python", module=path.stem)
        assert parsed.fallback_reason is None, path
        assert_coverage(text, parsed.chunks)
        assert all(c.end_line - c.start_line < 61 for c in parsed.chunks), path
        kinds.update(c.kind for c in parsed.chunks)
    assert {"module", "class", "method", "function", "block"} <= kinds
