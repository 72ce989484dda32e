"""LoRA training of a fill-in-the-middle student, its llama.cpp export and the agreement check."""
