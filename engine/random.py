"""Random number generators: torch's `Generator` API over numpy's PCG64.

Values are not torch's bit for bit (torch uses a Mersenne Twister with its own transforms), but a
seed determines every value, independent generators are independent, and a generator's state can
be saved and restored as bytes (`get_state`/`set_state`), as the server does for sessions.
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from . import errors

DEFAULT_SEED = 67280421310721  # torch.Generator().initial_seed()
_STATE_VERSION = 1
_STATE_BYTES = 1 + 8 + 16 + 16 + 1 + 4  # version, seed, state, inc, has_uint32, uinteger


class Generator:
    """A random number generator (torch.Generator): `generator=` on random ops.

    Args:
        seed: initial seed (torch's default seed when None).
    """

    def __init__(self, seed: int | None = None, device: str = "cpu"):
        if device != "cpu":
            raise errors.InvalidArgumentError(f"Generator: unsupported device {device!r}")
        self.device = device
        self.manual_seed(DEFAULT_SEED if seed is None else seed)

    def manual_seed(self, seed: Any) -> Generator:
        """Reseed; returns self. Negative seeds wrap modulo 2**64 as in torch."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise errors.InvalidTypeError(
                f"manual_seed expected a long, but got {type(seed).__name__}")
        seed = int(seed)
        if not -(2 ** 63) <= seed < 2 ** 64:
            raise errors.InvalidArgumentError(
                "Overflow when unpacking long long" if seed < 0 else
                f"manual_seed expected a value in [-2**63, 2**64), got {seed}")
        self._seed = seed % 2 ** 64
        self.rng = np.random.Generator(np.random.PCG64(self._seed))
        return self

    def seed(self) -> int:
        """Reseed from the operating system's entropy; returns the new seed."""
        new = secrets.randbits(63)
        self.manual_seed(new)
        return new

    def initial_seed(self) -> int:
        """The seed this generator was last seeded with."""
        return self._seed

    def get_state(self) -> np.ndarray:
        """The full state as a uint8 array (torch returns a ByteTensor), for `set_state`."""
        st = self.rng.bit_generator.state
        inner = st["state"]
        raw = (bytes([_STATE_VERSION]) + self._seed.to_bytes(8, "little")
               + int(inner["state"]).to_bytes(16, "little")
               + int(inner["inc"]).to_bytes(16, "little")
               + bytes([int(st["has_uint32"])]) + int(st["uinteger"]).to_bytes(4, "little"))
        return np.frombuffer(raw, dtype=np.uint8).copy()

    def set_state(self, state: Any) -> Generator:
        """Restore a state from `get_state` (bytes, a uint8 array or a Tensor); returns self.

        Raises:
            InvalidArgumentError: the state is not one `get_state` made.
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
        if len(raw) != _STATE_BYTES or raw[0] != _STATE_VERSION:
            raise errors.InvalidArgumentError(
                f"RNG state is wrong size or version (expected {_STATE_BYTES} bytes from "
                "get_state())")
        seed = int.from_bytes(raw[1:9], "little")
        bits = np.random.PCG64()
        bits.state = {"bit_generator": "PCG64",
                      "state": {"state": int.from_bytes(raw[9:25], "little"),
                                "inc": int.from_bytes(raw[25:41], "little")},
                      "has_uint32": raw[41], "uinteger": int.from_bytes(raw[42:46], "little")}
        self._seed = seed
        self.rng = np.random.Generator(bits)
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


def resolve(generator: Any) -> np.random.Generator:
    """The numpy generator behind `generator` (the default one when None)."""
    if generator is None:
        return default_generator.rng
    if not isinstance(generator, Generator):
        raise errors.InvalidTypeError(
            f"argument 'generator' must be torch.Generator, not {type(generator).__name__}")
    return generator.rng
