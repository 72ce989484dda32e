"""Shopping cart: items, quantities and totals."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Item:
    """One product line in a cart."""

    sku: str
    name: str
    unit_price: float
    quantity: int = 1

    def subtotal(self) -> float:
        """Price of this line before discounts."""
        return self.unit_price * self.quantity


@dataclass
class Cart:
    """A customer's cart."""

    items: list[Item] = field(default_factory=list)

    def add(self, item: Item) -> None:
        """Add an item, merging quantities when the SKU is already present."""
        for existing in self.items:
            if existing.sku == item.sku:
                existing.quantity += item.quantity
                return
        self.items.append(item)

    def remove(self, sku: str) -> None:
        """Remove every line with this SKU."""
        self.items = [item for item in self.items if item.sku != sku]

    def total(self) -> float:
        """Sum of all subtotals."""
        return sum(item.subtotal() for item in self.items)
