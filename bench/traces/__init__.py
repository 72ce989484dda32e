"""Typing traces for bench/typing_trace.py: the files to type and how they are typed."""
