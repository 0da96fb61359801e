"""`torch.__version__` and `torch.version`: the torch release whose behaviour gradserve follows.

Programs print `torch.__version__` first thing, and test it (`torch.__version__ >= "2.0"`,
`>= (1, 8)`): torch's value is a `TorchVersion`, a str that compares as a version, not as text
("2.13.0+cpu" > "2.2"). gradserve reproduces torch 2.13.0's CPU-only build, so it reports that
release, spelled as that wheel spells it. The comparison follows the PEP 440 subset torch's
versions use: the release numbers, a pre-release (a/b/rc), then the local label (+cpu).
"""

from __future__ import annotations

import re
import types
from typing import Any

_VERSION = re.compile(r"v?(\d+(?:\.\d+)*)(?:(a|b|rc)(\d+))?(?:\.dev(\d+))?(?:\+([\w.]+))?")


class VersionComparisonError(ValueError):
    """A version compared with something that is not a version string or a tuple of ints."""


def _key(v: Any) -> tuple[Any, ...]:
    """A sort key for a version string or a tuple of release numbers."""
    if isinstance(v, tuple) and all(isinstance(p, int) for p in v):
        v = ".".join(str(p) for p in v)
    if not isinstance(v, str):
        raise VersionComparisonError(f"Invalid version: '{v}'")
    m = _VERSION.fullmatch(v.strip().lower())
    if m is None:
        raise VersionComparisonError(f"Invalid version: '{v}'")
    release, pre, pre_n, dev, local = m.groups()
    numbers = [int(p) for p in release.split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:  # 2.13 == 2.13.0
        numbers.pop()
    pre_key = (0, pre, int(pre_n)) if pre else (1, "", 0)
    dev_key = (0, int(dev)) if dev is not None else (1, 0)
    local_key = tuple((0, int(p), "") if p.isdigit() else (-1, 0, p)
                      for p in re.split(r"[._-]", local)) if local else ()
    return tuple(numbers), pre_key, dev_key, local_key


class TorchVersion(str):
    """torch.torch_version.TorchVersion: a str that compares with strings and int tuples as a
    version ("2.13.0+cpu" > "2.2", >= (2, 13))."""

    def _cmp(self, other: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        return _key(str(self)), _key(other)

    def __lt__(self, other: Any) -> bool:
        a, b = self._cmp(other)
        return a < b

    def __le__(self, other: Any) -> bool:
        a, b = self._cmp(other)
        return a <= b

    def __gt__(self, other: Any) -> bool:
        a, b = self._cmp(other)
        return a > b

    def __ge__(self, other: Any) -> bool:
        a, b = self._cmp(other)
        return a >= b

    def __eq__(self, other: Any) -> bool:
        try:
            a, b = self._cmp(other)
        except VersionComparisonError:
            return False
        return a == b

    def __ne__(self, other: Any) -> bool:
        return not self == other

    __hash__ = str.__hash__


# the release gradserve reproduces: torch's CPU wheel of 2.13.0
TORCH_VERSION = TorchVersion("2.13.0+cpu")


def namespace() -> types.SimpleNamespace:
    """torch.version as a CPU-only build has it (no CUDA, no ROCm)."""
    return types.SimpleNamespace(__version__=TORCH_VERSION, cuda=None, hip=None, debug=False)
