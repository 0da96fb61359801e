"""Run a batch of corpus examples with real torch, or with gradserve sessions standing in for it.

    python tests/corpus/run.py BATCH.json RESULTS.json                       # real torch
    python tests/corpus/run.py --gradserve HOST:PORT BATCH.json RESULTS.json  # gradserve

BATCH.json maps an example id to {"preamble": code, "example": code}; tests/test_corpus.py writes
it from tests/corpus/manifest.py and the installed torch's docstrings (the examples' text is
never committed: see tests/corpus/README.md). Each example runs in a fresh namespace: its
preamble (imports, `torch.manual_seed(0)`, the names a docstring leaves undefined) as a script,
not echoed; then its example text statement by statement as the interactive interpreter and
doctest run it (mode "single": an expression statement's value is echoed with repr, None is
not). RESULTS.json maps the id to {"stdout": what it printed, "error": "" or the exception's
last traceback line, "seconds": its wall time}; an exception ends that example, not the batch.

With --gradserve each example gets a session of its own, installed before it runs as
`sys.modules["torch"]` and each of its namespaces in TORCH_SUBMODULES as
`sys.modules["torch.<name>"]`, so that `import torch.nn as nn`, `from torch import nn` and
`from torch.autograd.functional import hessian` bind the session's objects; a namespace the
session lacks fails to import, as a missing module does. Real torch is never imported then.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import signal
import sys
import time
import traceback
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# torch's submodules that examples import by name; each is bound to the session's attribute of
# that dotted path when the session has one
TORCH_SUBMODULES = (
    "nn", "nn.functional", "nn.init", "nn.modules", "nn.modules.module", "nn.parameter",
    "nn.utils", "nn.utils.rnn", "optim",
    "optim.lr_scheduler", "optim.optimizer", "autograd", "autograd.function",
    "autograd.functional", "autograd.graph", "func", "utils", "utils.data",
    "utils.data.dataloader", "utils.data.dataset", "utils.data.sampler", "utils._pytree",
    "utils.checkpoint", "linalg", "random", "cuda", "backends", "testing", "_dynamo",
    "distributions",
    "_higher_order_ops",
)
# torch's other top-level package, functorch, imports the real torch: a session's run installs
# stand-ins instead, with the names that are torch's own in torch 2.13 (its
# functorch/experimental/control_flow.py imports `cond` from torch and `map` from
# torch._higher_order_ops.map) bound to the session's objects of those dotted paths; importing
# any other name from them fails as a missing name does
TORCH_COMPANIONS = {"functorch": {}, "functorch.experimental": {},
                    "functorch.experimental.control_flow": {
                        "cond": "cond", "map": "_higher_order_ops.map"}}
# one example may take this long (seconds) before it is stopped with TimeoutError
EXAMPLE_TIMEOUT = 300
# the PyPI files the corpus vendors (programs, and the packages they import)
VENDORED = Path(__file__).resolve().parent / "pypi"


def install_session_as_torch(session: Any) -> None:
    """Make `import torch` (and its submodules in TORCH_SUBMODULES) bind `session`'s objects.

    Args:
        session: a gradserve.client Session.
    """
    for name in [m for m in sys.modules if m == "torch" or m.startswith("torch.")]:
        del sys.modules[name]
    for companion, names in TORCH_COMPANIONS.items():
        module = types.ModuleType(companion)
        for name, dotted in names.items():
            obj = session_object(session, dotted)
            if obj is not None:
                setattr(module, name, obj)
        sys.modules[companion] = module
    sys.modules["torch"] = session
    for dotted in TORCH_SUBMODULES:
        obj = session_object(session, dotted)
        if obj is not None:
            sys.modules[f"torch.{dotted}"] = obj


def session_object(session: Any, dotted: str) -> Any:
    """The session's object at dotted path `dotted` ("utils.data"), or None if it has none."""
    obj: Any = session
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def run_interactively(code: str, namespace: dict[str, Any], filename: str) -> None:
    """Run `code` statement by statement as doctest does, echoing expression statements.

    Args:
        code: Python source.
        namespace: the globals it runs in.
        filename: the name tracebacks give it.
    """
    for statement in ast.parse(code, filename).body:
        interactive = ast.Interactive(body=[statement])
        exec(compile(interactive, filename, "single"), namespace)


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Raise TimeoutError in the main thread after `seconds` (where SIGALRM exists)."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"the example ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_example(example_id: str, preamble: str, example: str) -> dict[str, Any]:
    """Run one example in a fresh namespace; returns what it printed and how it ended."""
    out = io.StringIO()
    namespace: dict[str, Any] = {"__name__": "__main__"}
    error = ""
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        try:
            with time_limit(EXAMPLE_TIMEOUT):
                exec(compile(preamble, f"<{example_id}: preamble>", "exec"), namespace)
                run_interactively(example, namespace, f"<{example_id}>")
        except Exception as exc:  # the example's own failure is its result, compared as such
            error = traceback.format_exception_only(type(exc), exc)[-1].strip()
            sys.stderr.write(f"--- {example_id}\n{traceback.format_exc()}")
    return {"stdout": out.getvalue(), "error": error,
            "seconds": round(time.perf_counter() - start, 3)}


def run_batch(batch: dict[str, dict[str, str]],
              around: Callable[[], contextlib.AbstractContextManager[Any]]) -> dict[str, Any]:
    """Run every example of `batch` inside a fresh `around()` context each."""
    results: dict[str, Any] = {}
    for example_id, parts in batch.items():
        try:
            with around():
                results[example_id] = run_example(example_id, parts["preamble"],
                                                  parts["example"])
        except Exception as exc:  # opening or closing the session failed: that example's result
            result = results.setdefault(example_id, {"stdout": "", "error": "", "seconds": 0})
            result["error"] = result["error"] or traceback.format_exception_only(
                type(exc), exc)[-1].strip()
            sys.stderr.write(f"--- {example_id} (session)\n{traceback.format_exc()}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gradserve", metavar="HOST:PORT",
                        help="run through sessions on this gradserve server instead of torch")
    parser.add_argument("batch", help="the examples to run (JSON)")
    parser.add_argument("results", help="where to write what each printed (JSON)")
    args = parser.parse_args(argv)
    with open(args.batch, encoding="utf-8") as f:
        batch = json.load(f)
    sys.path.insert(0, str(VENDORED))
    if args.gradserve is None:
        import torch

        @contextlib.contextmanager
        def torch_state_kept() -> Iterator[None]:
            # each gradserve example gets a fresh session; give each torch example the same
            # process-wide defaults back
            dtype, grad_enabled = torch.get_default_dtype(), torch.is_grad_enabled()
            yield
            torch.set_default_dtype(dtype)
            torch.set_grad_enabled(grad_enabled)

        results = run_batch(batch, torch_state_kept)
    else:
        import gradserve.client

        client = gradserve.client.connect(args.gradserve)

        @contextlib.contextmanager
        def session_as_torch() -> Iterator[None]:
            with client.session() as session:
                install_session_as_torch(session)
                yield
                sys.stdout.flush()

        results = run_batch(batch, session_as_torch)
    with open(args.results, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
