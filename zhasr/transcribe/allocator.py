"""Freed memory kept for the next window: glibc's malloc told to serve every thread from one heap and to
give nothing back to the system.

By default glibc maps each allocation over 32 MB afresh and unmaps it on free, and threads take arenas
of their own that map their large blocks too. A Whisper encoder pass on a CPU allocates and frees its
attention scores (8 heads x 1500 x 1500 float32, 72 MB) and the layers' activations in every layer of
every window, so each pass faulted in hundreds of MB of new zeroed pages: a fifth of its time in the
kernel. Measured on 2 cores (whisper-base's shape, CTranslate2 int8, bench/transcribe.py's real call):
an encoder window 0.89 -> 0.71 s, the call 11.6 -> 10.2 s, peak memory unchanged (the largest
allocations are the same; they are now reused instead of remapped). Each of the three settings is
needed: without one arena the workers' arenas still map their blocks (a thread's arena holds at most
64 MB), and without the trim threshold the heap shrinks and grows again. A thread that took an arena of
its own before the call keeps it, so the earlier the call the better: the ``zhasr`` command makes it
first thing, the runtimes before they load a model.

The cost: the process keeps its high-water heap; memory freed by a long file is reused by the next
request, not returned to the system.
"""

from __future__ import annotations

import ctypes
import functools
import logging

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8  # malloc.h
_NEVER = 2**31 - 1  # bytes: the trim threshold is an int


@functools.cache
def keep_freed_memory() -> bool:
    """Set glibc's malloc to one arena, no mmap, no trimming, once per process; False where the C library
    is not glibc (nothing changed). Called before the runtime starts its threads, so that they share the
    one heap."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (only glibc has it)
    except (OSError, AttributeError, TypeError):  # TypeError: Windows has no CDLL(None)
        return False
    refused = [name for name, option, value in (("M_ARENA_MAX", _M_ARENA_MAX, 1), ("M_MMAP_MAX", _M_MMAP_MAX, 0),
                                                 ("M_TRIM_THRESHOLD", _M_TRIM_THRESHOLD, _NEVER))
               if libc.mallopt(option, value) != 1]
    if refused:
        log.warning("glibc's mallopt refused %s; freed memory may still be unmapped", ", ".join(refused))
    return not refused
