"""KV snapshots: earlier prompts' llama.cpp state, kept so a return visit skips its prefill.

llama.cpp holds one prompt in its KV cache; a new prompt reuses only the common token
prefix. Switching to another file (or far away in one) throws the cache away, and
coming back evaluates the whole prompt again (1-6 s on a laptop CPU). Before the live
state is thrown away it is copied out (about 18 KB a token for Gemma 3 270M, 10 ms for
a thousand tokens); when a later prompt shares a longer prefix with a snapshot than
with the live cache, the snapshot is copied back and only the tail is evaluated. A
snapshot whose leading tokens are the repository-context block also serves the prompts
of other files that start with it.

The copy is the context's whole state (``llama_state_get_data``: this worker uses
sequence 0 only), not ``llama_state_seq_get_data``: for a model with sliding-window
layers (Gemma 3: 512 tokens) the per-sequence copy leaves out the window layers' cells
that the sequence's last position no longer sees, so a restore followed by the
rollback to a shorter common prefix gave wrong logits (8.6 off, KL 0.009, for a
700-token snapshot cut back to its first 100 tokens); the whole state restores them
all and matches a fresh evaluation exactly. It holds no logits here, unlike
``Llama.save_state``, which also copies a logits buffer of n_batch x vocabulary floats
(262k for Gemma), hundreds of MB.

``SnapshotStore`` is the bounded LRU (plain data, no llama.cpp); ``KvSnapshots`` binds
it to one ``llama_cpp.Llama`` and decides, before each prefill, what to save and what
to restore.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

# The worker's one sequence: llama.cpp's KV cache holds one prompt at a time.
_SEQ = 0
# A live state shorter than this is cheap to evaluate again: not worth a snapshot.
MIN_SNAPSHOT_TOKENS = 64
# A restore must spare at least this many tokens of prefill. A restore costs about
# 10 ms per thousand snapshot tokens on a CPU, while one token of prefill costs 2-15 ms:
# the margin keeps a restore well below what it saves, and near-identical snapshots
# (the same file a few tokens apart) from displacing one another.
MIN_GAIN_TOKENS = 32
# A prompt that drops at least this many of the live tokens (or half of a short live
# state) has left the file or region the live state belongs to, so the live state is
# saved first. Typing drops fewer: the changed tail near the cursor plus the previous
# suggestion's tokens (at most 96, the multi-line default).
SWITCH_TOKENS = 192

Tokens = npt.NDArray[np.int32]


def common_prefix(a: Tokens, b: Tokens) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


@dataclass
class Snapshot:
    """The context's state when its KV cache held exactly ``tokens`` (positions 0..len-1)."""

    tokens: Tokens
    data: ctypes.Array[ctypes.c_uint8]

    @property
    def size(self) -> int:
        """Bytes of ``data``, what the bound counts."""
        return len(self.data)


class SnapshotStore:
    """Snapshots under a byte bound, least recently used evicted first."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = max(0, limit_bytes)
        self._items: OrderedDict[int, Snapshot] = OrderedDict()  # oldest first
        self._next_key = 0
        self.bytes = 0
        self.saves = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._items)

    def snapshots(self) -> list[Snapshot]:
        """Oldest first."""
        return list(self._items.values())

    def best(self, tokens: Tokens) -> tuple[Snapshot | None, int]:
        """The snapshot sharing the longest prefix with ``tokens`` (the smaller on a tie)."""
        best: Snapshot | None = None
        best_common = 0
        for snapshot in self._items.values():
            common = common_prefix(snapshot.tokens, tokens)
            if common > best_common or (
                best is not None and common == best_common and snapshot.size < best.size
            ):
                best, best_common = snapshot, common
        return best, best_common

    def touch(self, snapshot: Snapshot) -> None:
        """Mark ``snapshot`` as just used."""
        for key, item in self._items.items():
            if item is snapshot:
                self._items.move_to_end(key)
                return

    def covering(self, tokens: Tokens) -> Snapshot | None:
        """A stored snapshot that makes one of ``tokens`` redundant (see ``add``)."""
        for snapshot in self._items.values():
            if common_prefix(snapshot.tokens, tokens) >= len(tokens) - MIN_GAIN_TOKENS:
                return snapshot
        return None

    def add(self, tokens: Tokens, data: ctypes.Array[ctypes.c_uint8]) -> bool:
        """Store a snapshot, evicting the least recently used ones to stay within the bound.

        A snapshot ``S`` that a newer one ``L`` nearly contains (they differ only in
        ``S``'s last ``MIN_GAIN_TOKENS`` tokens or fewer) is dropped: for any prompt, ``S``
        spares fewer than that many tokens more than ``L``, so it would never be restored
        in preference to it. Returns False where ``data`` alone exceeds the bound.
        """
        if len(data) > self.limit_bytes:
            return False
        for key, snapshot in list(self._items.items()):
            if common_prefix(snapshot.tokens, tokens) >= len(snapshot.tokens) - MIN_GAIN_TOKENS:
                self._remove(key)
        while self._items and self.bytes + len(data) > self.limit_bytes:
            self._remove(next(iter(self._items)))
            self.evictions += 1
        self._items[self._next_key] = Snapshot(tokens=tokens, data=data)
        self._next_key += 1
        self.bytes += len(data)
        self.saves += 1
        return True

    def _remove(self, key: int) -> None:
        self.bytes -= self._items.pop(key).size


class KvSnapshots:
    """Saves and restores the KV cache of one ``llama_cpp.Llama`` around its prefills."""

    def __init__(self, llm: Any, llama_cpp: Any, limit_bytes: int) -> None:
        self._llm = llm
        self._llama_cpp = llama_cpp
        self.store = SnapshotStore(limit_bytes)
        self.restores = 0
        self.tokens_saved = 0
        self.save_seconds = 0.0
        self.restore_seconds = 0.0

    @property
    def enabled(self) -> bool:
        return self.store.limit_bytes > 0

    def best_prefix(self, tokens: Sequence[int]) -> int:
        """The longest prefix of ``tokens`` a snapshot holds (0 when disabled or none)."""
        if not self.enabled:
            return 0
        return self.store.best(np.asarray(tokens, dtype=np.int32))[1]

    def before_prefill(self, target: Sequence[int], common: int) -> int:
        """Prepare the cache for evaluating ``target``, which shares ``common`` live tokens.

        Saves the live state if ``target`` abandons it (or a restore is about to
        overwrite it), then restores the snapshot that shares the longest prefix with
        ``target`` if it spares at least ``MIN_GAIN_TOKENS`` more than the live cache.
        Returns the number of leading ``target`` tokens the cache now holds.
        """
        if not self.enabled:
            return common
        wanted = np.asarray(target, dtype=np.int32)
        snapshot, shared = self.store.best(wanted)
        restore = snapshot is not None and shared >= common + MIN_GAIN_TOKENS
        live = int(self._llm.n_tokens)
        dropped = live - common
        switching = dropped >= min(SWITCH_TOKENS, live // 2)
        if restore and snapshot is not None:
            self.store.touch(snapshot)  # saving the live state must not evict it
        if live >= MIN_SNAPSHOT_TOKENS and (switching or (restore and dropped >= MIN_GAIN_TOKENS)):
            self._save_live()
        if not restore or snapshot is None:
            return common
        if not self._restore(snapshot):
            return 0  # the failed restore cleared the cache
        self.restores += 1
        self.tokens_saved += shared - common
        return shared

    def stats(self) -> dict[str, Any]:
        return {
            "count": len(self.store),
            "bytes": self.store.bytes,
            "limit_bytes": self.store.limit_bytes,
            "restores": self.restores,
            "saves": self.store.saves,
            "tokens_saved": self.tokens_saved,
            "evictions": self.store.evictions,
            "save_ms": round(self.save_seconds * 1000, 3),
            "restore_ms": round(self.restore_seconds * 1000, 3),
        }

    def _save_live(self) -> None:
        """Copy the live state into the store (unless a snapshot already covers it)."""
        llm = self._llm
        llama_cpp = self._llama_cpp
        n = int(llm.n_tokens)
        tokens = np.array(llm.input_ids[:n], dtype=np.int32)
        covering = self.store.covering(tokens)
        if covering is not None:
            self.store.touch(covering)
            return
        started = time.perf_counter()
        ctx = llm._ctx.ctx
        # Cells past n_tokens (a prefill cancelled before its first chunk) are stale:
        # llama.cpp drops them at the next eval anyway; the snapshot must hold ``tokens`` only.
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(ctx), _SEQ, n, -1)
        size = int(llama_cpp.llama_state_get_size(ctx))
        if size <= 0 or size > self.store.limit_bytes:
            return
        data = (ctypes.c_uint8 * size)()
        if int(llama_cpp.llama_state_get_data(ctx, data, size)) != size:
            logger.warning("llama.cpp could not copy out the KV state of %d tokens", n)
            return
        self.store.add(tokens, data)
        self.save_seconds += time.perf_counter() - started

    def _restore(self, snapshot: Snapshot) -> bool:
        """Replace the KV cache with ``snapshot`` and tell ``Llama`` which tokens it holds."""
        llm = self._llm
        llama_cpp = self._llama_cpp
        started = time.perf_counter()
        ctx = llm._ctx.ctx
        read = int(llama_cpp.llama_state_set_data(ctx, snapshot.data, snapshot.size))
        n = len(snapshot.tokens)
        if read != snapshot.size:
            # What the cache holds after a failed read is unknown: start from nothing.
            logger.warning("llama.cpp could not restore a KV snapshot of %d tokens", n)
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
            llm.n_tokens = 0
            return False
        # Llama.eval appends at n_tokens (dropping KV cells past it) and Llama.generate
        # reuses the prefix it finds in input_ids: both must describe the restored cells.
        llm.input_ids[:n] = snapshot.tokens
        llm.n_tokens = n
        # The logits llama.cpp holds are not the restored prompt's: generate must
        # evaluate at least one token before it samples (as Llama.load_state does).
        llm._requires_eval = True
        self.restore_seconds += time.perf_counter() - started
        return True
