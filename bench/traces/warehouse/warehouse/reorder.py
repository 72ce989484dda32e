"""Reorder planning: which SKUs to buy, how many, and from whom."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from warehouse.stock import StockLedger, StockRecord
from warehouse.suppliers import SupplierBook, SupplierOffer

logger = logging.getLogger(__name__)

SAFETY_DAYS = 3
REVIEW_PERIOD_DAYS = 7


@dataclass(frozen=True)
class ReorderLine:
    """One purchase the planner recommends."""

    sku: str
    supplier: str
    units: int
    cost: float
    arrives_in_days: int


def target_level(record: StockRecord, lead_time_days: int) -> int:
    """Units to hold so that stock lasts through delivery, review and a safety margin."""
    days = lead_time_days + REVIEW_PERIOD_DAYS + SAFETY_DAYS
    wanted = math.ceil(record.daily_demand * days)
    return max(wanted, record.minimum)


def units_to_order(record: StockRecord, lead_time_days: int) -> int:
    """How many units to buy now; zero when the stock already reaches the target."""
    shortfall = target_level(record, lead_time_days) - record.available()
    return max(0, shortfall)


def choose_offer(offers: list[SupplierOffer], units: int, days_left: float) -> SupplierOffer | None:
    """The cheapest offer that arrives before the stock runs out, else the fastest one."""
    if not offers:
        return None
    in_time = [offer for offer in offers if offer.lead_time_days < days_left]
    if in_time:
        return min(in_time, key=lambda offer: offer.cost_of(units))
    return min(offers, key=lambda offer: offer.lead_time_days)


def plan_line(record: StockRecord, book: SupplierBook) -> ReorderLine | None:
    """The purchase for one SKU, or None when it needs none or nobody sells it."""
    offers = book.offers_for(record.sku)
    if not offers:
        logger.warning("no supplier sells %s", record.sku)
        return None
    slowest = max(offer.lead_time_days for offer in offers)
    units = units_to_order(record, slowest)
    if units == 0:
        return None
    offer = choose_offer(offers, units, record.days_of_cover())
    if offer is None:
        return None
    return ReorderLine(
        sku=record.sku,
        supplier=offer.supplier,
        units=units,
        cost=offer.cost_of(units),
        arrives_in_days=offer.lead_time_days,
    )


def plan_reorders(ledger: StockLedger, book: SupplierBook, horizon: float) -> list[ReorderLine]:
    """Purchases for every SKU that will run short within the horizon, most urgent first."""
    lines = []
    for record in sorted(ledger.low_stock(horizon), key=StockRecord.days_of_cover):
        line = plan_line(record, book)
        if line is not None:
            lines.append(line)
    return lines


def total_cost(lines: list[ReorderLine]) -> float:
    """What the whole plan costs."""
    return round(sum(line.cost for line in lines), 2)


def by_supplier(lines: list[ReorderLine]) -> dict[str, list[ReorderLine]]:
    """The plan split into one purchase order per supplier."""
    orders: dict[str, list[ReorderLine]] = {}
    for line in lines:
        orders.setdefault(line.supplier, []).append(line)
    return orders


def summary(lines: list[ReorderLine]) -> str:
    """One line per purchase order, for a log or a chat message."""
    parts = []
    for supplier, order in sorted(by_supplier(lines).items()):
        units = sum(line.units for line in order)
        parts.append(f"{supplier}: {len(order)} SKUs, {units} units")
    return "; ".join(parts) if parts else "nothing to order"
