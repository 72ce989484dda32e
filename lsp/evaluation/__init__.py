"""``apprentice eval``: what suggestions are worth, measured through the full pipeline."""
