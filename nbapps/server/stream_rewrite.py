"""Rewriting a streamed response body on the fly, also where a match spans two chunks.

The app proxy (:mod:`nbapps.server.proxy`) removes the runner's token from pages and JSON
(:class:`Scrubber`) and makes an app page's own URLs keep its ticket (:class:`Replacer`); both
see the body in the chunks the runner sends, so a match may start in one chunk and end in the
next: each step holds back the longest end of a chunk that could begin a match.
"""
from __future__ import annotations


class Replacer:
    """Replaces ``old`` by ``new`` in a byte stream, also where ``old`` spans two chunks."""

    def __init__(self, old: str, new: str = "") -> None:
        self.old = old.encode()
        self.new = new.encode()
        self.tail = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self.tail + chunk
        out: list[bytes] = []
        pos = 0
        while True:
            at = data.find(self.old, pos)
            if at < 0:
                break
            out += [data[pos:at], self.new]
            pos = at + len(self.old)
        rest = data[pos:]
        # hold back the longest end of the unreplaced rest that could start ``old``
        keep = 0
        for k in range(min(len(self.old) - 1, len(rest)), 0, -1):
            if self.old.startswith(rest[-k:]):
                keep = k
                break
        out.append(rest[:len(rest) - keep])
        self.tail = rest[len(rest) - keep:]
        return b"".join(out)

    def close(self) -> bytes:
        out, self.tail = self.tail, b""
        return out


#: content types a runner's token is scrubbed from on their way to a browser
SCRUBBED_TYPES = ("text/html", "application/json", "text/plain")


def scrubbed(content_type: str) -> bool:
    """Whether a runner's answer of this type has the runner's token scrubbed from it."""
    return any(t in content_type for t in SCRUBBED_TYPES)


class Scrubber(Replacer):
    """Removes a secret from a byte stream, also when the secret spans two chunks."""

    def __init__(self, secret: str) -> None:
        super().__init__(secret, "")


class Chain:
    """Several replacers applied in turn to one stream."""

    def __init__(self, steps: list[Replacer]) -> None:
        self.steps = steps

    def feed(self, chunk: bytes) -> bytes:
        for step in self.steps:
            chunk = step.feed(chunk)
        return chunk

    def close(self) -> bytes:
        out = b""
        for step in self.steps:
            out = step.feed(out) + step.close()
        return out


__all__ = ["SCRUBBED_TYPES", "Chain", "Replacer", "Scrubber", "scrubbed"]
