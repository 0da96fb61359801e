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

The state (`get_state`/`set_state`) is torch's 5056 bytes (surface/rng_state.py): a state
saved by torch restores here, and one saved here restores in torch.
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from gradserve.surface import devices, rng_state
from gradserve.surface import func as func_state

from . import errors

DEFAULT_SEED = rng_state.DEFAULT_SEED
_MT_N = rng_state.MT_N
# States of gradserve's own formats before it wrote torch's: (version byte, length) -> what it
# held. They are refused with a message saying so.
_OLD_STATES = {(1, 46): "a PCG64 state", (2, 2508): "a Mersenne Twister state in gradserve's "
               "own layout"}


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
        device: the CPU ("cpu" or device("cpu")); others are refused as a CPU-only torch does.
        seed: initial seed (torch's default seed when None); torch has no such argument.
    """

    def __init__(self, device: Any = "cpu", *, seed: int | None = None):
        devices.check_device(device, "Generator", errors.InvalidTypeError,
                             errors.InvalidArgumentError)
        self.device = devices.CPU
        self._bits = np.random.MT19937()
        self._normal: float | None = None  # the cached sine half of the last Box-Muller pair
        self._float_normal: float | None = None  # torch's float cache: kept, never drawn
        # torch's `next` while the key is due to be twisted (numpy's pos == 624): 0 after
        # seeding, 624 after draws, or what a restored state said
        self._idle_next = 0
        self.manual_seed(DEFAULT_SEED if seed is None else seed)

    def manual_seed(self, seed: Any) -> Generator:
        """Reseed; returns self. Negative seeds wrap modulo 2**64 as in torch.

        Raises:
            InvalidArgumentError: the seed is not an int (torch's RuntimeError).
            InvalidValueError: the seed is outside [-2**63, 2**64) (torch's ValueError).
        """
        self._seed = rng_state.generator_seed(seed, errors.InvalidArgumentError,
                                              errors.InvalidValueError)
        self._set_key(_init_genrand(self._seed & 0xFFFFFFFF), _MT_N)
        self._normal = self._float_normal = None
        self._idle_next = 0
        return self

    def _set_key(self, key: np.ndarray, pos: int) -> None:
        self._bits.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": pos}}

    def seed(self) -> int:
        """Reseed from the operating system's entropy; returns the new seed."""
        new = secrets.randbits(64)  # torch reads 64 bits from /dev/urandom
        self.manual_seed(new)
        return new

    def initial_seed(self) -> int:
        """The seed this generator was last seeded with."""
        return self._seed

    # --- raw draws -------------------------------------------------------------------------------

    def random(self, n: int) -> np.ndarray:
        """`n` of torch's `random()`: 32-bit draws, as uint64."""
        self._idle_next = _MT_N
        return self._bits.random_raw(n)

    def random64(self, n: int) -> np.ndarray:
        """`n` of torch's `random64()`: two 32-bit draws each, the first the high half."""
        self._idle_next = _MT_N
        r = self._bits.random_raw(2 * n)
        return (r[0::2] << np.uint64(32)) | r[1::2]

    # --- state -----------------------------------------------------------------------------------

    def state_bytes(self) -> bytes:
        """The state as torch's 5056 bytes (see surface/rng_state.py)."""
        st = self._bits.state["state"]
        pos = int(st["pos"])
        # numpy reads key[pos] next, twisting first at 624; torch decrements `left` and twists
        # at 0, then reads state[next]
        left, nxt = (1, self._idle_next) if pos == _MT_N else (_MT_N + 1 - pos, pos)
        return rng_state.pack(rng_state.MTState(self._seed, left, nxt, st["key"],
                                                self._normal, self._float_normal))

    def get_state(self) -> np.ndarray:
        """The state as a uint8 numpy array of torch's 5056 bytes, for `set_state` here or in
        torch (`torch.from_numpy`). torch returns a ByteTensor; gradserve has no uint8 dtype."""
        return np.frombuffer(self.state_bytes(), np.uint8).copy()

    def set_state(self, state: Any) -> Generator:
        """Restore a state from `get_state` (here or torch's); returns self.

        Args:
            state: a uint8 numpy array or bytes (a torch ByteTensor also does).
        Raises:
            InvalidTypeError: the state is none of those (torch's messages).
            InvalidArgumentError: the state has the wrong size or is invalid (torch's messages),
                or is a position of the twister gradserve cannot reproduce.
        """
        raw = rng_state.state_bytes(state, errors.InvalidTypeError)
        old = _OLD_STATES.get((raw[0], len(raw))) if raw else None
        if old is not None:
            raise errors.InvalidArgumentError(
                f"RNG state is {old} saved by an older gradserve, no longer readable: the state "
                "is now torch's 5056 bytes; reseed with manual_seed()")
        problem = rng_state.state_problem(raw)
        if problem is not None:
            raise errors.InvalidArgumentError(problem)
        st = rng_state.unpack(raw)
        assert st is not None  # state_problem checked it
        if st.left == 1:
            pos = _MT_N
        elif st.left + st.next == _MT_N + 1:
            pos = st.next
        else:  # torch twists early and reads on; a state torch itself never writes
            raise errors.InvalidArgumentError(
                f"gradserve cannot reproduce this mt19937 position (left={st.left}, "
                f"next={st.next}): torch's own states have left + next == 625")
        self._seed = st.seed
        self._set_key(st.key, pos)
        self._idle_next = st.next
        self._normal, self._float_normal = st.normal, st.float_normal
        return self

    def __repr__(self) -> str:
        return rng_state.generator_repr(self)


default_generator = Generator()


def manual_seed(seed: Any) -> Generator:
    """Seed the default generator (torch.manual_seed, which takes `int(seed)`); returns it."""
    return default_generator.manual_seed(rng_state.module_seed(seed))


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


def resolve(generator: Any, op: str = "") -> Generator:
    """`generator`, or the default generator when None.

    Args:
        op: the function or method given `generator`, for the message (`uniform_`).
    Raises:
        InvalidTypeError: `generator` is not a Generator.
    """
    func_state.check_random(errors.InvalidArgumentError)  # inside vmap(randomness="error")
    if generator is None:
        return default_generator
    if not isinstance(generator, Generator):
        raise errors.InvalidTypeError(
            f"{op + '(): ' if op else ''}argument 'generator' must be torch.Generator, not "
            f"{type(generator).__name__}")
    return generator
