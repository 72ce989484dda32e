"""Stock on hand: one record per SKU and the ledger that holds them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StockRecord:
    """How much of one SKU the warehouse holds and how fast it sells."""

    sku: str
    on_hand: int
    reserved: int = 0
    daily_demand: float = 0.0
    minimum: int = 0

    def available(self) -> int:
        """Units that can still be promised to a customer."""
        return max(0, self.on_hand - self.reserved)

    def days_of_cover(self) -> float:
        """Days until the available units run out at the current demand."""
        if self.daily_demand <= 0:
            return float("inf")
        return self.available() / self.daily_demand


@dataclass
class StockLedger:
    """Every stock record, looked up by SKU."""

    records: dict[str, StockRecord] = field(default_factory=dict)

    def add(self, record: StockRecord) -> None:
        """Track a SKU, replacing any earlier record for it."""
        self.records[record.sku] = record

    def get(self, sku: str) -> StockRecord | None:
        """The record for this SKU, if the warehouse tracks it."""
        return self.records.get(sku)

    def low_stock(self, days: float) -> list[StockRecord]:
        """Records whose stock will not last the given number of days."""
        return [r for r in self.records.values() if r.days_of_cover() < days]
