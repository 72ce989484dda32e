"""Discount rules applied to a cart total."""

from __future__ import annotations

from shop.cart import Cart


def percent_off(cart: Cart, percent: float) -> float:
    """The cart total reduced by a percentage."""
    return cart.total() * (1 - percent / 100)


def bulk_discount(cart: Cart, threshold: int = 10, percent: float = 5.0) -> float:
    """A percentage off when the cart holds at least ``threshold`` items."""
    count = sum(item.quantity for item in cart.items)
    if count >= threshold:
        return percent_off(cart, percent)
    return cart.total()
