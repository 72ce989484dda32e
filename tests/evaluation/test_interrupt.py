"""A Ctrl-C during ``apprentice eval --trigger automatic`` is never lost."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import pytest

from lsp.evaluation.editor import _run_interruptible


def test_a_ctrl_c_absorbed_by_a_wait_still_ends_the_run() -> None:
    reached_the_end = []

    async def absorbs_the_cancel() -> None:
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGINT)
        # As a request's wait may, when the cancel lands in it:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(5)
        reached_the_end.append(True)

    with pytest.raises(KeyboardInterrupt):
        _run_interruptible(absorbs_the_cancel())
    assert reached_the_end == [True]  # the coroutine ended normally: only the flag knew
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_callers_own_sigint_handler_is_put_back() -> None:
    def mine(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    async def nothing() -> None:
        return None

    previous = signal.signal(signal.SIGINT, mine)
    try:
        _run_interruptible(nothing())
        assert signal.getsignal(signal.SIGINT) is mine
    finally:
        signal.signal(signal.SIGINT, previous)
