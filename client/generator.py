"""`torch.Generator` through a session: a random number generator held by the server.

Each `session.Generator()` is a generator of its own on the server (CreateGenerator), seeded with
torch's default seed, whose draws are independent of the session's default generator
(`session.default_generator`, handle 0 on the wire) as in torch. Random ops given `generator=`
name its handle (ApplyOp.generator), so the server draws exactly what the engine, and torch,
draw. The generator's seed and state are read from the server when asked for (one round trip);
`get_state` returns torch's 5056 state bytes as a uint8 numpy array (gradserve has no uint8
dtype), which `set_state` here or `torch.from_numpy` + `set_state` in torch take back.
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from gradserve.surface import devices, rng_state
from gradserve.v1 import GENERATOR_FEATURE


class Generator:
    """torch.Generator(device='cpu') in a session: an independent random stream, kept on the
    server; pass it as `generator=` to random ops, samplers and `random_split`.

    Args:
        device: "cpu" (or torch.device("cpu")); other devices are refused as torch refuses them
            on a CPU-only build.
    Raises:
        RuntimeError: the server predates generators.
    """

    _session: Any  # set on each session's own subclass (Session.Generator)

    def __init__(self, device: Any = "cpu") -> None:
        s = self._session
        devices.check_device(device, "Generator")
        _check_server(s, "torch.Generator objects")
        self._handle = next(s._handles)
        s._record().create_generator.generator = self._handle
        s._after_record()

    @classmethod
    def _default(cls) -> Generator:
        """The session's default generator (handle 0), created without an instruction."""
        g = cls.__new__(cls)
        g._handle = 0
        return g

    def __del__(self) -> None:
        try:
            if self._handle:
                self._session._recorder.released.put(self._handle)
        except Exception:  # noqa: BLE001 - never fully constructed, or interpreter exit
            pass

    @property
    def device(self) -> devices.device:
        """Always the CPU."""
        return devices.CPU

    def manual_seed(self, seed: Any) -> Generator:
        """Reseed (an int in [-2**63, 2**64), wrapped modulo 2**64); returns self.

        Raises:
            RuntimeError: the seed is not an int (torch's message).
            ValueError: the seed is out of range.
        """
        m = self._session._record().manual_seed
        m.seed = rng_state.generator_seed(seed, RuntimeError)
        m.generator = self._handle
        self._session._epoch += 1
        self._session._after_record()
        return self

    def seed(self) -> int:
        """Reseed from the operating system's entropy; returns the new seed."""
        new = secrets.randbits(64)  # torch reads 64 bits from /dev/urandom
        self.manual_seed(new)
        return new

    def _info(self, state: bool) -> Any:
        s = self._session
        _check_server(s, "reading a generator's seed or state")
        out: list[Any] = []
        m = s._record(_keep_result(out)).get_generator
        m.generator = self._handle
        m.state = state
        s.flush()
        return out[0]

    def initial_seed(self) -> int:
        """The seed this generator was last seeded with (or that its restored state holds)."""
        return int(self._info(False).initial_seed)

    def get_state(self) -> np.ndarray:
        """The state: torch's 5056 bytes as a uint8 numpy array (torch returns a ByteTensor)."""
        return np.frombuffer(self._info(True).state, np.uint8).copy()

    def set_state(self, new_state: Any) -> Generator:
        """Restore a state from `get_state` here or in torch; returns self.

        Args:
            new_state: a uint8 numpy array, a torch ByteTensor, or bytes.
        Raises:
            TypeError: another type (torch's message).
            RuntimeError: the wrong size or an invalid state (torch's messages).
        """
        _check_server(self._session, "restoring a generator's state")
        raw = rng_state.state_bytes(new_state, TypeError)
        problem = rng_state.state_problem(raw)
        if problem is not None:
            raise RuntimeError(problem)
        m = self._session._record().set_generator_state
        m.generator = self._handle
        m.state = raw
        self._session._epoch += 1
        self._session._after_record()
        return self

    def __repr__(self) -> str:
        return rng_state.generator_repr(self)


def _check_server(session: Any, what: str) -> None:
    """Refuse what needs the server's generator instructions on a server without them.

    Raises:
        RuntimeError: the server does not list the 'generators' feature (an older gradserve).
    """
    if not session._generators:
        raise RuntimeError(f"the server at {session.client.target} does not support {what} "
                           f"(no '{GENERATOR_FEATURE}' feature: an older gradserve); "
                           "torch.manual_seed works")


def _keep_result(out: list[Any]) -> Any:
    """A sink that keeps a GetGenerator's GeneratorInfo in `out`."""
    def sink(r: Any) -> None:
        out.append(r.generator)
    return sink


def generator_handle(session: Any, generator: Any, op: str) -> int:
    """The handle of `generator=` given to `op` (0 for the default generator).

    Raises:
        TypeError: not a Generator of this session (torch's message).
        RuntimeError: a Generator of another session.
    """
    if not isinstance(generator, Generator):
        raise TypeError(f"{op}(): argument 'generator' must be torch.Generator, not "
                        f"{type(generator).__name__}")
    if generator._session is not session:
        raise RuntimeError(f"{op}(): the generator belongs to another session")
    return generator._handle
