"""Compiled page templates shared by every page a runner renders (issue 12's rush).

Voilà makes a new exporter, and so a new Jinja environment, for every page; each page then
parses and compiles the same nbconvert/Voilà templates again. Profiled on this machine (py-spy,
30 simultaneous pages of a tiny app), template compilation was 55 % of the Voilà process's busy
CPU. Jinja's bytecode cache is the supported way to reuse compiled templates across
environments: a template is compiled once per process and loaded from memory afterwards; its
key is the template's name and file and it is checked against the source's hash, so a changed
template is compiled again. The generated code depends on the environment's async mode and
extensions, so each combination has its own cache.

:func:`install` runs in the runner's Voilà process (from its generated ``voila.py``).
"""
from __future__ import annotations

import threading
from types import CodeType
from typing import Any

from jinja2 import BytecodeCache
from jinja2.bccache import Bucket


class MemoryBytecodeCache(BytecodeCache):
    """Compiled templates kept in this process's memory, as code objects.

    Jinja's buckets would marshal the code to bytes and back at every load (7 % of a runner's
    Voilà CPU in a rush of new viewers); a code object is immutable and each environment runs it
    in a namespace of its own (``Template.from_code``), so it is kept as is, with the checksum
    of the source it was compiled from.
    """

    def __init__(self) -> None:
        self._code: dict[str, tuple[str, CodeType]] = {}
        self._lock = threading.Lock()
        #: templates loaded from the cache (a changed source is a miss: Jinja recompiles it)
        self.hits = 0

    def load_bytecode(self, bucket: Bucket) -> None:
        with self._lock:
            entry = self._code.get(bucket.key)
        if entry is not None and entry[0] == bucket.checksum:
            bucket.code = entry[1]
            self.hits += 1

    def dump_bytecode(self, bucket: Bucket) -> None:
        if bucket.code is None:
            return
        with self._lock:
            self._code[bucket.key] = (bucket.checksum, bucket.code)

    def clear(self) -> None:
        with self._lock:
            self._code.clear()

    def __len__(self) -> int:
        return len(self._code)


_caches: dict[tuple[Any, ...], MemoryBytecodeCache] = {}


def cache_for(environment: Any) -> MemoryBytecodeCache:
    """The shared cache of environments compiled like ``environment``."""
    key = (bool(environment.is_async), tuple(sorted(environment.extensions)),
           bool(environment.autoescape) if not callable(environment.autoescape) else "fn")
    return _caches.setdefault(key, MemoryBytecodeCache())


def install() -> None:
    """Give every nbconvert template environment made in this process the shared cache."""
    from nbconvert.exporters.templateexporter import TemplateExporter

    create = TemplateExporter._create_environment
    if getattr(create, "nbapps_shared_cache", False):
        return

    def create_with_cache(self: Any) -> Any:
        environment = create(self)
        environment.bytecode_cache = cache_for(environment)
        return environment

    create_with_cache.nbapps_shared_cache = True  # type: ignore[attr-defined]
    TemplateExporter._create_environment = create_with_cache  # type: ignore[method-assign]


__all__ = ["MemoryBytecodeCache", "cache_for", "install"]
