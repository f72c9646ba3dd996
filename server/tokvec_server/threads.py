"""How the server's threads share the CPU.

- Compute threads (the model's, and the tokenizing pool's) run at a lower priority than the
  event loop, so a health probe, a cancel or a new request is read the moment it arrives instead
  of after the forward's time slice; the loop needs little CPU, and the model gets all that is
  left. Measured with the model and the event loop on one core (tests/reliability/test_r06_health.py):
  health p99 while saturated 27 ms at equal priority, 16 ms with the model at nice +10, the same
  docs/s. With the tokenizing threads at nice +10 too, 5 runs alternated with 5 at nice 0 on a
  slower day of the 2-core machine: p99 17.2-25.0 ms (median 20.4) against 22.0-34.2 (median 24.1).
- Only the model's thread holds an OpenMP pool (``one_thread``).
- Two glibc malloc arenas for the whole process (``limit_malloc_arenas``): glibc gives threads
  arenas of their own, up to 8 per core, and under the gRPC, tokenizer and torch threads those
  fragment and hold memory (docs/reliability.md R1: RSS growth over a soak; issue: peak RSS).
- The objects made at start are frozen out of the garbage collector (``freeze_startup_objects``).
- The fast tokenizers run serially (``serial_tokenizers``): the prep pool already tokenizes docs
  side by side, and the tokenizers' own rayon pool only adds threads that compete with the model's
  OpenMP threads for the same cores. Measured on the 2-core machine, one ``tokvec embed`` over 4x EWT test, 3 runs
  alternated: 21.1, 20.8, 23.1 s against 23.4, 22.8, 24.6 s with the rayon pool (1.06-1.11x).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import logging
import os
import sys
import threading
from collections.abc import Iterator

import torch

log = logging.getLogger("tokvec.threads")

COMPUTE_NICE = 10
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h


def limit_malloc_arenas() -> None:
    """Cap glibc's malloc arenas, as MALLOC_ARENA_MAX would; call before the server's threads
    allocate. An explicit MALLOC_ARENA_MAX in the environment wins."""
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "mallopt"):  # musl has none: nothing to cap
            libc.mallopt(_M_ARENA_MAX, MALLOC_ARENAS)
    except OSError:
        pass


def serial_tokenizers() -> None:
    """Keep the fast tokenizers to the calling thread, as TOKENIZERS_PARALLELISM=false would;
    call before the first tokenizer runs. An explicit TOKENIZERS_PARALLELISM wins."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def freeze_startup_objects() -> None:
    """Move every object alive now (torch, transformers, the model: about 390,000 with MiniLM)
    to the collector's permanent generation, once the server is loaded and warmed up.

    A full collection walks every tracked object while holding the GIL, so with them it stalled
    the event loop and the model for 212 ms (measured here with MiniLM loaded; the quick soak saw
    one such pause of 164 ms): the tail of every latency figure. Frozen, it takes under a
    millisecond. They live as long as the process anyway."""
    gc.collect()
    gc.freeze()


def lower_priority() -> None:
    """Give the calling thread, and the threads it starts from now on, a lower priority (Linux:
    niceness is per thread, and inherited by the threads a thread creates)."""
    if not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + COMPUTE_NICE)
    except OSError as exc:  # not fatal: the server is only less responsive under load
        log.warning("could not lower a compute thread's priority: %s", exc)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch ops on this thread run single-threaded meanwhile, so that it makes no OpenMP pool.

    Only the model's thread should have one. libgomp slows every pool in the process down once
    pools hold more threads than there are cores (it stops spinning, so each parallel op waits for
    its threads to wake), and a pool lives as long as its thread: a model loaded on a pool thread
    of the event loop's executor made every forward on the model's thread 1.6x slower for short
    spans (measured on this project's 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
