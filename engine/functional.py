"""torch.autograd.functional and gradcheck for the engine: gradserve.surface.functional bound to
the engine's module (`gradserve.engine.autograd.functional.jacobian(...)`)."""

from __future__ import annotations

import sys
from typing import Any

from gradserve.surface.functional import ErrorTypes, Functional

from . import errors


def _engine() -> Any:
    return sys.modules["gradserve.engine"]  # bound lazily: this module loads while it is built


functional = Functional(_engine, ErrorTypes(errors.InvalidArgumentError, errors.InvalidTypeError,
                                            errors.InvalidValueError))
gradcheck = functional.gradcheck
gradgradcheck = functional.gradgradcheck
