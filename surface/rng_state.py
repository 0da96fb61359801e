"""torch's CPU generator state bytes (`Generator.get_state()`, `torch.get_rng_state()`).

torch 2.13 saves its Mersenne Twister as the 5056 bytes of `CPUGeneratorImplState`
(aten/src/ATen/CPUGeneratorImpl.cpp), little-endian on x86-64:

    offset  field
    0       uint64 the_initial_seed
    8       int32  left            draws until the next twist, plus one (1..624)
    12      int32  seeded          1
    16      uint64 next            index of the next word of `state` to read (0..624)
    24      uint64 state[624]      the untwisted key, one 32-bit word in each
    5016    double normal_x, normal_y, normal_rho; int32 normal_is_valid; padding
                                   (normal_y holds the cached second Box-Muller value)
    5048    float  next_float_normal_sample; bool is_next_float_normal_sample_valid; padding

The engine's generator (engine/random.py) reads and writes these bytes, and the client reads the
seed from them, so a state moves between torch, the engine and a session unchanged.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

MT_N = 624
STATE_BYTES = 5056
_HEAD = struct.Struct("<QiiQ")
_KEY_AT = _HEAD.size
_NORMAL_AT = _KEY_AT + 8 * MT_N  # normal_x, normal_y, normal_rho, normal_is_valid
_NORMAL = struct.Struct("<dddi")
_FLOAT_AT = 5048
_FLOAT = struct.Struct("<f?")


@dataclass
class MTState:
    """One generator state, field by field as torch keeps it."""

    seed: int
    left: int
    next: int
    key: np.ndarray  # 624 words, uint32
    normal: float | None  # the cached double normal sample
    float_normal: float | None  # torch's float cache (kept, never drawn by gradserve)


def pack(s: MTState) -> bytes:
    """The 5056 state bytes of `s`, as torch's `get_state()` returns them."""
    raw = bytearray(STATE_BYTES)
    _HEAD.pack_into(raw, 0, s.seed, s.left, 1, s.next)
    raw[_KEY_AT:_NORMAL_AT] = np.asarray(s.key, np.uint32).astype("<u8").tobytes()
    _NORMAL.pack_into(raw, _NORMAL_AT, 0.0, 0.0 if s.normal is None else s.normal, 0.0,
                      s.normal is not None)
    _FLOAT.pack_into(raw, _FLOAT_AT, 0.0 if s.float_normal is None else s.float_normal,
                     s.float_normal is not None)
    return bytes(raw)


DEFAULT_SEED = 67280421310721  # torch.Generator().initial_seed(), torch.initial_seed() at start


def generator_seed(seed: Any, runtime_error: type[Exception],
                   value_error: type[Exception] = ValueError) -> int:
    """A seed given to `Generator.manual_seed`, as torch takes it: an int (not a bool) in
    [-2**63, 2**64), negative ones wrapped modulo 2**64.

    Raises:
        runtime_error: not an int ("manual_seed expected a long, but got float").
        value_error: out of range ("Overflow when unpacking long long").
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise runtime_error(f"manual_seed expected a long, but got {type(seed).__name__}")
    seed = int(seed)
    if not -(2 ** 63) <= seed < 2 ** 64:
        raise value_error("Overflow when unpacking long long")
    return seed % 2 ** 64


def module_seed(seed: Any) -> int:
    """A seed given to `torch.manual_seed`, which first takes `int(seed)` (1.5, "3" and True
    are seeds there; None is a TypeError from int())."""
    return int(seed)


def state_bytes(state: Any, type_error: type[Exception]) -> bytes:
    """The bytes of a state given to `set_state`: a uint8 tensor or numpy array, or bytes
    (torch takes only a ByteTensor; gradserve, which has no uint8 dtype, takes the numpy array
    `get_state` returns, and bytes).

    Raises:
        type_error: anything else (torch's messages).
    """
    if isinstance(state, (bytes, bytearray)):
        return bytes(state)
    arr = state
    if not isinstance(arr, np.ndarray) and hasattr(arr, "numpy"):
        arr = arr.detach().numpy() if hasattr(arr, "detach") else arr.numpy()
    if not isinstance(arr, np.ndarray):
        raise type_error(f"expected a torch.ByteTensor, but got {type(state).__name__}")
    if arr.dtype != np.uint8:
        raise type_error("RNG state must be a torch.ByteTensor")
    return arr.tobytes()


def state_problem(raw: bytes) -> str | None:
    """torch's message refusing state bytes `raw` (wrong size, invalid twister), or None."""
    if len(raw) != STATE_BYTES:
        return (f"Expected a CPUGeneratorImplState of size {STATE_BYTES} but found the input "
                f"RNG state size to be {len(raw)}")
    return None if unpack(raw) is not None else "Invalid mt19937 state"


def generator_repr(generator: Any) -> str:
    """torch's repr of a Generator (`<torch._C.Generator object at 0x...>`), so a program that
    prints one (`torch.manual_seed(0)` at a prompt) prints what torch prints but the address."""
    return f"<torch._C.Generator object at {id(generator):#x}>"


def unpack(raw: bytes) -> MTState | None:
    """The state in `raw` (of length STATE_BYTES), or None when torch would refuse it as an
    invalid mt19937 state (not seeded, `left` outside 1..624 or `next` past 624)."""
    seed, left, seeded, nxt = _HEAD.unpack_from(raw, 0)
    if not seeded or not 0 < left <= MT_N or not 0 <= nxt <= MT_N:
        return None
    # torch copies the 64-bit words into 32-bit ones, keeping the low halves
    key = (np.frombuffer(raw, "<u8", MT_N, _KEY_AT) & 0xFFFFFFFF).astype(np.uint32)
    _, normal_y, _, valid = _NORMAL.unpack_from(raw, _NORMAL_AT)
    float_normal, float_valid = _FLOAT.unpack_from(raw, _FLOAT_AT)
    return MTState(seed, left, nxt, key, normal_y if valid else None,
                   float_normal if float_valid else None)


def initial_seed(raw: bytes) -> int:
    """The seed recorded in state bytes `raw` (`Generator.initial_seed()` after `set_state`)."""
    return int(_HEAD.unpack_from(raw, 0)[0])
