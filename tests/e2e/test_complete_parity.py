"""``apprentice complete`` shows what the editor would: the same buffer, given to the
server over LSP (an explicit request) and to the command, gets the same suggestion.

Both build their pipeline through ``lsp.core.factory`` from the server's settings, with
the embedded model's greedy first candidate, the same repository index (embeddings
included: semantic retrieval on both sides) and the same verifier. What differs only by
timing is kept out of the way: the request is explicit (no time budget, no debounce), and
the server has warmed the full prompt of the file (it was opened with the cursor at its
end), so its cold-start small prompt does not apply; the command takes the full prompt.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO_ROOT, Session, end_of, server_env

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(600)]

PRICES = '''"""Prices of the shop."""


def apply_discount(price: float, percent: float) -> float:
    """The price less ``percent`` per cent."""
    return price * (100 - percent) / 100


def with_tax(price: float, rate: float = 0.2) -> float:
    """The price with value added tax."""
    return price * (1 + rate)
'''
CART = '''"""A shopping cart."""

from dataclasses import dataclass, field

from shop.prices import apply_discount, with_tax


@dataclass
class Item:
    """One line of the cart: a product, its unit price and how many."""

    name: str
    price: float
    quantity: int = 1

    def cost(self) -> float:
        """The line's price before any discount."""
        return self.price * self.quantity


@dataclass
class Cart:
    """What a customer is about to buy."""

    items: list[Item] = field(default_factory=list)

    def add(self, name: str, price: float, quantity: int = 1) -> None:
        """Put ``quantity`` of a product in the cart."""
        self.items.append(Item(name, price, quantity))

    def count(self) -> int:
        """How many products the cart holds."""
        return sum(item.quantity for item in self.items)


def cart_total(prices: list[float], percent: float) -> float:
    """The sum of the discounted prices, tax included."""
    total = 0.0
    for price in prices:
        total += '''
EDITED = "shop/cart.py"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A small git repository: a module of prices and a cart module that uses it."""
    root = tmp_path / "shop_repo"
    (root / "shop").mkdir(parents=True)
    (root / "shop" / "__init__.py").write_text("", encoding="utf-8")
    (root / "shop" / "prices.py").write_text(PRICES, encoding="utf-8")
    (root / EDITED).write_text(CART, encoding="utf-8")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def complete_with_the_cli(session: Session, line: int, col: int) -> dict[str, object]:
    """``apprentice complete FILE --line L --col C --json`` on the index the server built."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lsp.cli",
            "complete",
            str(session.workspace / EDITED),
            "--line",
            str(line),
            "--col",
            str(col),
            "--json",
            "--index-dir",
            str(session.index_dir),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
        env={**server_env(), "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert isinstance(data, dict)
    return data


async def test_the_cli_suggests_what_the_server_suggests(
    session: Session, gemma_path: object, minilm_dir: object
) -> None:
    await session.initialize({"index": {"embeddings": True}})
    status = await session.wait_ready()
    assert status["index"]["vectors"] > 0  # semantic retrieval on both sides
    position = end_of(CART)
    uri = session.open(EDITED)
    # The file's full prompt is warmed at the end of the document (where the cursor is).
    await session.wait_status(lambda s: s["warmups"]["runs"] >= 1, "the prompt to be warmed")

    items = await session.inline(uri, position)  # explicit: no time budget, no debounce
    data = complete_with_the_cli(session, position.line, position.character)

    assert len(items) == 1, f"the server suggested nothing; the command: {data}"
    item = items[0]
    assert data["text"] == item.insert_text, (data, item)
    replaced = int(str(data["replaced"]))
    assert item.range is not None
    assert item.range.start.character == position.character - replaced
    assert data["context"], data  # the repository context reached the command's prompt too
