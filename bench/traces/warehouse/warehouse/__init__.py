"""Stock levels, suppliers and reorder planning for a small warehouse."""
