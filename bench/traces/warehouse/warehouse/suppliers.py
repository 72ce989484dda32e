"""Suppliers: who sells each SKU, at what price, and how long delivery takes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SupplierOffer:
    """One supplier's terms for one SKU."""

    supplier: str
    sku: str
    unit_cost: float
    lead_time_days: int
    pack_size: int = 1

    def cost_of(self, units: int) -> float:
        """Price of the given units, rounded up to whole packs."""
        packs = -(-units // self.pack_size)
        return packs * self.pack_size * self.unit_cost


class SupplierBook:
    """All known offers, grouped by SKU."""

    def __init__(self, offers: list[SupplierOffer] | None = None) -> None:
        self._by_sku: dict[str, list[SupplierOffer]] = {}
        for offer in offers or []:
            self.register(offer)

    def register(self, offer: SupplierOffer) -> None:
        """Remember an offer."""
        self._by_sku.setdefault(offer.sku, []).append(offer)

    def offers_for(self, sku: str) -> list[SupplierOffer]:
        """Every offer for this SKU, cheapest first."""
        return sorted(self._by_sku.get(sku, []), key=lambda offer: offer.unit_cost)
