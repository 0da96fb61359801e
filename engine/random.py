"""Random number generators: torch's CPU `Generator`, value for value.

torch's CPU generator is a 32-bit Mersenne Twister (MT19937) seeded as `init_genrand(seed mod
2**32)`; numpy's `MT19937` bit generator is the same engine, so `random_raw` gives torch's raw
draws in order without a Python loop. Each distribution then applies torch's transform
(aten/src/ATen/core/TransformationHelper.h, DistributionsHelper.h, native/cpu/
DistributionTemplates.h), vectorised here:

- `random()` is one 32-bit draw, `random64()` two (`hi << 32 | lo`, hi first).
- a float32 uniform is `(random() & (2**24 - 1)) * 2**-24`, a float64 one
  `(random64() & (2**53 - 1)) * 2**-53`; `uniform_(a, b)` is then `u * (b - a) + a` in the dtype.
- a normal value one at a time is Box-Muller in double from two float64 uniforms, the sine half
  cached in the generator for the next one (`_normal_serial`); a contiguous tensor of 16 or more
  elements fills uniforms first and transforms blocks of 16 (`_normal_blocks`), in float32 with
  the AVX2 kernel's Cephes log/sincos approximations (`_log_ps`, `_sincos_ps`).

The state (`get_state`/`set_state`) is this module's own versioned byte format (see
`_STATE_VERSION`), not torch's 5056-byte layout.
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from . import errors

DEFAULT_SEED = 67280421310721  # torch.Generator().initial_seed()
_MT_N = 624
# Version 2: MT19937. Version 1 (gradserve <= this change) held a PCG64 state, which cannot be
# turned into torch's stream; such a state is refused with a message saying so.
_STATE_VERSION = 2
_STATE_BYTES = 1 + 8 + 4 * _MT_N + 2 + 1 + 8  # version, seed, key, pos, has normal, normal
_OLD_STATE = {1: 46}  # version -> byte length of states this version no longer reads


def _init_genrand(seed32: int) -> np.ndarray:
    """MT19937's `init_genrand`: the key torch's `mt19937(seed)` starts from."""
    key = np.empty(_MT_N, np.uint32)
    s = seed32
    key[0] = s
    for i in range(1, _MT_N):
        s = (1812433253 * (s ^ (s >> 30)) + i) & 0xFFFFFFFF
        key[i] = s
    return key


class Generator:
    """A random number generator (torch.Generator): `generator=` on random ops.

    Draws the same numbers as torch's CPU generator for the same seed and calls.

    Args:
        seed: initial seed (torch's default seed when None).
        device: only "cpu".
    """

    def __init__(self, seed: int | None = None, device: str = "cpu"):
        if device != "cpu":
            raise errors.InvalidArgumentError(f"Generator: unsupported device {device!r}")
        self.device = device
        self._bits = np.random.MT19937()
        self._normal: float | None = None  # the cached sine half of the last Box-Muller pair
        self.manual_seed(DEFAULT_SEED if seed is None else seed)

    def manual_seed(self, seed: Any) -> Generator:
        """Reseed; returns self. Negative seeds wrap modulo 2**64 as in torch.

        Raises:
            InvalidTypeError: the seed is not an integer.
            InvalidArgumentError: the seed is outside [-2**63, 2**64).
        """
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise errors.InvalidTypeError(
                f"manual_seed expected a long, but got {type(seed).__name__}")
        seed = int(seed)
        if not -(2 ** 63) <= seed < 2 ** 64:
            raise errors.InvalidArgumentError(
                "Overflow when unpacking long long" if seed < 0 else
                f"manual_seed expected a value in [-2**63, 2**64), got {seed}")
        self._seed = seed % 2 ** 64
        self._set_key(_init_genrand(self._seed & 0xFFFFFFFF), _MT_N)
        self._normal = None
        return self

    def _set_key(self, key: np.ndarray, pos: int) -> None:
        self._bits.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": pos}}

    def seed(self) -> int:
        """Reseed from the operating system's entropy; returns the new seed."""
        new = secrets.randbits(63)
        self.manual_seed(new)
        return new

    def initial_seed(self) -> int:
        """The seed this generator was last seeded with."""
        return self._seed

    # --- raw draws -------------------------------------------------------------------------------

    def random(self, n: int) -> np.ndarray:
        """`n` of torch's `random()`: 32-bit draws, as uint64."""
        return self._bits.random_raw(n)

    def random64(self, n: int) -> np.ndarray:
        """`n` of torch's `random64()`: two 32-bit draws each, the first the high half."""
        r = self._bits.random_raw(2 * n)
        return (r[0::2] << np.uint64(32)) | r[1::2]

    # --- state -----------------------------------------------------------------------------------

    def get_state(self) -> np.ndarray:
        """The full state as a uint8 array (torch returns a ByteTensor), for `set_state`."""
        st = self._bits.state["state"]
        cached = self._normal is not None
        raw = (bytes([_STATE_VERSION]) + self._seed.to_bytes(8, "little")
               + np.asarray(st["key"], dtype="<u4").tobytes()
               + int(st["pos"]).to_bytes(2, "little") + bytes([cached])
               + np.float64(self._normal if cached else 0.0).astype("<f8").tobytes())
        return np.frombuffer(raw, dtype=np.uint8).copy()

    def set_state(self, state: Any) -> Generator:
        """Restore a state from `get_state` (bytes, a uint8 array or a Tensor); returns self.

        Raises:
            InvalidTypeError: the state is not bytes, a uint8 array or a Tensor.
            InvalidArgumentError: the state is not one `get_state` of this version made.
        """
        if hasattr(state, "numpy") and not isinstance(state, np.ndarray):
            state = state.numpy()
        if isinstance(state, np.ndarray):
            if state.dtype != np.uint8 or state.ndim != 1:
                raise errors.InvalidArgumentError(
                    "expected a 1-D uint8 generator state (from get_state())")
            raw = state.tobytes()
        elif isinstance(state, (bytes, bytearray)):
            raw = bytes(state)
        else:
            raise errors.InvalidTypeError(
                f"set_state(): argument 'new_state' must be bytes or uint8 array, not "
                f"{type(state).__name__}")
        if raw and _OLD_STATE.get(raw[0]) == len(raw):
            raise errors.InvalidArgumentError(
                f"RNG state version {raw[0]} (a PCG64 state saved by an older gradserve) is no "
                "longer readable: the generator is now torch's Mersenne Twister; reseed with "
                "manual_seed()")
        if len(raw) != _STATE_BYTES or raw[0] != _STATE_VERSION:
            raise errors.InvalidArgumentError(
                f"RNG state is wrong size or version (expected {_STATE_BYTES} bytes of version "
                f"{_STATE_VERSION} from get_state())")
        key = np.frombuffer(raw, dtype="<u4", count=_MT_N, offset=9).astype(np.uint32)
        pos = int.from_bytes(raw[9 + 4 * _MT_N:11 + 4 * _MT_N], "little")
        if not 0 <= pos <= _MT_N or raw[11 + 4 * _MT_N] > 1 or not key.any():
            raise errors.InvalidArgumentError("RNG state is corrupt (from get_state()?)")
        self._seed = int.from_bytes(raw[1:9], "little")
        self._set_key(key, pos)
        self._normal = (float(np.frombuffer(raw, "<f8", 1, 12 + 4 * _MT_N)[0])
                        if raw[11 + 4 * _MT_N] else None)
        return self

    def __repr__(self) -> str:
        return f"<gradserve.engine.Generator seed={self._seed}>"


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seed the default generator (torch.manual_seed); returns it."""
    return default_generator.manual_seed(seed)


def seed() -> int:
    """Seed the default generator from the operating system's entropy; returns the seed."""
    return default_generator.seed()


def initial_seed() -> int:
    """The default generator's seed."""
    return default_generator.initial_seed()


def get_rng_state() -> np.ndarray:
    """The default generator's state (see `Generator.get_state`)."""
    return default_generator.get_state()


def set_rng_state(state: Any) -> None:
    """Restore the default generator's state."""
    default_generator.set_state(state)


def resolve(generator: Any) -> Generator:
    """`generator`, or the default generator when None.

    Raises:
        InvalidTypeError: `generator` is not a Generator.
    """
    if generator is None:
        return default_generator
    if not isinstance(generator, Generator):
        raise errors.InvalidTypeError(
            f"argument 'generator' must be torch.Generator, not {type(generator).__name__}")
    return generator
