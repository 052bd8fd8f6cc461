"""Plain data classes without the cost of ``dataclasses``.

``@dataclass`` writes each class's ``__init__``/``__eq__``/``__repr__`` as source and ``exec``s it
at import time: 0.3-0.8 ms per class on this machine, paid by every ``isoproof-oci`` invocation
(the spec alone has a dozen classes). A :class:`Record` subclass lists its fields in ``__slots__``
and writes its ``__init__`` by hand; equality, ``repr`` and ``to_dict`` come from here.
"""

from __future__ import annotations

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any


class Record:
    __slots__ = ()

    def _fields(self) -> tuple[str, ...]:
        return type(self).__slots__  # type: ignore[return-value]

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self._fields())

    __hash__ = None  # type: ignore[assignment]  # mutable: not hashable, like a dataclass

    def __repr__(self) -> str:
        body = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields())
        return f"{type(self).__name__}({body})"

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self._fields()}
