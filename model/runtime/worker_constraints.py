"""The worker's side of constrained decoding: the vocabulary indexed once, processors per request.

``model.runtime.constrain`` restricts the first identifier a generation writes,
``model.runtime.constrain_attributes`` the attribute after each qualifier it writes; a
``complete`` message asks for either, both or neither (``names``, ``qualified``).
"""

from __future__ import annotations

import logging
from typing import Any

from model.runtime.constrain import NameProcessor, PieceIndex, llama_pieces, name_processor
from model.runtime.constrain_attributes import AttributeProcessor, DotIndex, attribute_processor

logger = logging.getLogger(__name__)


class WorkerConstraints:
    """The worker's side: its model's vocabulary indexed on first use, processors per request."""

    def __init__(self, llm: Any, llama_cpp: Any) -> None:
        self._llm = llm
        self._llama_cpp = llama_cpp
        self._index: PieceIndex | None = None
        self._dots: DotIndex | None = None

    def _pieces(self) -> PieceIndex:
        if self._index is None:
            self._index = PieceIndex(llama_pieces(self._llm, self._llama_cpp))
        return self._index

    def processors(
        self, message: dict[str, Any], prompt_tokens: int
    ) -> list[NameProcessor | AttributeProcessor]:
        """The processors a ``complete`` message asks for, in the order they apply."""
        found = (
            self.processor(message.get("names"), prompt_tokens),
            self.attributes(message.get("qualified"), prompt_tokens),
        )
        return [processor for processor in found if processor is not None]

    def processor(self, spec: object, prompt_tokens: int) -> NameProcessor | None:
        """The processor a ``complete`` message's ``names`` asks for (None: free decoding).

        ``spec`` is ``{"names": [...], "typed": str, "lead": str}`` or absent. A spec that
        cannot be used is logged once and the generation runs unconstrained.
        """
        if not spec:
            return None
        try:
            if not isinstance(spec, dict):
                raise TypeError(f"expected an object, got {type(spec).__name__}")
            names = [str(name) for name in spec.get("names") or ()]
            typed, lead = str(spec.get("typed", "")), str(spec.get("lead", ""))
            return name_processor(self._pieces(), names, typed, lead, prompt_tokens)
        except Exception as error:
            logger.warning("names not constrained (%s); decoding freely", error)
            return None

    def attributes(self, spec: object, prompt_tokens: int) -> AttributeProcessor | None:
        """The ``AttributeProcessor`` a ``complete`` message's ``qualified`` asks for (None:
        free decoding).

        ``spec`` is ``{"names": {qualifier: [...]}, "private": [...], "line": str}`` or
        absent. A spec that cannot be used is logged once and the generation runs free.
        """
        if not spec:
            return None
        try:
            if not isinstance(spec, dict) or not isinstance(spec.get("names"), dict):
                raise TypeError("expected an object with a names object")
            index = self._pieces()
            if self._dots is None:
                self._dots = DotIndex(index.pieces)
            table = [
                (str(qualifier), [str(name) for name in names])
                for qualifier, names in spec["names"].items()
            ]
            private = [str(qualifier) for qualifier in spec.get("private") or ()]
            line = str(spec.get("line", ""))
            return attribute_processor(index, self._dots, table, private, line, prompt_tokens)
        except Exception as error:
            logger.warning("attributes not constrained (%s); decoding freely", error)
            return None
