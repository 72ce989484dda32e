"""A tiny order-handling package."""
