"""End-to-end tests: the real ``apprentice serve`` driven over LSP by a real client."""
