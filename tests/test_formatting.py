"""surface/formatting.py against torch's own repr, character for character."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradserve.surface import formatting
from tests.reference import torch

NP_DTYPES = {"float32": np.float32, "float64": np.float64, "int32": np.int32,
             "int64": np.int64, "bool": np.bool_}


class AVeryLongCustomFunctionNameThatPushesTheSuffixOntoItsOwnLine(torch.autograd.Function):
    """Identity whose backward node name is long enough to wrap any suffix line."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad


LONG_NODE = "AVeryLongCustomFunctionNameThatPushesTheSuffixOntoItsOwnLineBackward"


def torch_variants(values: np.ndarray, dtype: str):
    """Yield (torch tensor, the suffixes our caller would pass) for every autograd state."""
    base = torch.from_numpy(np.array(values, dtype=NP_DTYPES[dtype]))  # keeps 0-dim
    yield base, []
    if dtype.startswith("float"):
        leaf = base.clone().requires_grad_(True)
        yield leaf, ["requires_grad=True"]
        yield leaf * 1, ["grad_fn=<MulBackward0>"]
        yield (AVeryLongCustomFunctionNameThatPushesTheSuffixOntoItsOwnLine.apply(leaf),
               [f"grad_fn=<{LONG_NODE}>"])


def assert_matches_torch(values: np.ndarray, dtype: str) -> None:
    """Compare our repr with torch's for every autograd variant of the tensor."""
    for tensor, suffixes in torch_variants(values, dtype):
        expected = repr(tensor)
        assert formatting.format_tensor(values, dtype, suffixes) == expected, (
            f"dtype={dtype} shape={values.shape} suffixes={suffixes}\n"
            f"values={values!r}\nexpected:\n{expected}"
        )


@pytest.fixture
def restore_printoptions():
    yield
    torch.set_printoptions(profile="default")
    formatting.set_printoptions(profile="default")


def set_both(**options):
    torch.set_printoptions(**options)
    formatting.set_printoptions(**options)


def rng_normal(n, seed=0):
    return np.random.default_rng(seed).standard_normal(n)


nan, inf = float("nan"), float("inf")

FIXED = {
    # float notation
    "int_valued": ([1.0, 2.0, 3.0], "float32"),
    "fractions": ([0.6667, 1.3333, 2.0], "float32"),
    "float32_tenths": ([0.1, 0.2, 0.3], "float32"),
    "float64_tenths": ([0.1, 0.2, 0.3], "float64"),
    "negative": ([-1.5, 2.25, -300.125], "float32"),
    "big_int_valued": ([123456.0, -7.0], "float64"),
    "ratio_over_1000": ([1.0, 1001.5], "float32"),
    "ratio_exactly_1000": ([1.0, 1000.0], "float32"),
    "max_over_1e8": ([1e9, 2e9], "float32"),
    "max_exactly_1e8": ([1e8, 2e7], "float64"),
    "min_under_1e-4": ([1e-5, 2e-5], "float32"),
    "min_1e-4_float64": ([1e-4, 2e-4], "float64"),
    "min_1e-4_float32": ([1e-4, 2e-4], "float32"),  # float32(1e-4) < 1e-4: scientific
    "mixed_sign_sci": ([-1e-8, 1e8, 3.0], "float32"),
    "ratio_overflows": ([1e308, 1e-308, 5e-324], "float64"),
    "float32_extremes": ([3.4e38, -1.2e-38, 1.0], "float32"),
    # non-finite and signed zeros
    "nan_inf": ([nan, inf, -inf, 1.5], "float32"),
    "only_nonfinite": ([nan, inf, -inf], "float64"),
    "nan_with_ints": ([nan, 1.0, 20.0], "float32"),
    "nan_with_sci": ([nan, 1e-9, -inf], "float32"),
    "all_zero": ([0.0, 0.0], "float32"),
    "negative_zero": ([-0.0, 0.0, 1.0], "float32"),
    "negative_zero_fraction": ([-0.0, 0.5], "float64"),
    "negative_zero_only": ([-0.0], "float32"),
    "negative_zero_sci": ([-0.0, 1e-7], "float32"),
    # 0-dim
    "scalar_float32": (3.0, "float32"),
    "scalar_fraction": (2.0 / 3.0, "float32"),
    "scalar_float64": (2.5, "float64"),
    "scalar_sci": (1.5e-7, "float32"),
    "scalar_nan": (nan, "float32"),
    "scalar_negative_zero": (-0.0, "float64"),
    "scalar_int64": (7, "int64"),
    "scalar_int32": (-7, "int32"),
    "scalar_bool": (True, "bool"),
    # integers and bools
    "int64": ([1, -20, 300], "int64"),
    "int32": ([1, -20, 300], "int32"),
    "int64_extremes": ([-(2**63), 2**63 - 1], "int64"),
    "int32_extremes": ([-(2**31), 2**31 - 1], "int32"),
    "bools": ([True, False, True], "bool"),
    "bools_all_true": ([[True], [True]], "bool"),
    # empty
    "empty_float32": (np.zeros(0), "float32"),
    "empty_float64": (np.zeros(0), "float64"),
    "empty_int64": (np.zeros(0), "int64"),
    "empty_int32": (np.zeros(0), "int32"),
    "empty_bool": (np.zeros(0), "bool"),
    "empty_0x3": (np.zeros((0, 3)), "float32"),
    "empty_0x3_int32": (np.zeros((0, 3)), "int32"),
    "empty_3x0": (np.zeros((3, 0)), "float32"),
    "empty_2x0x3_float64": (np.zeros((2, 0, 3)), "float64"),
    # nesting and wrapping
    "matrix": (rng_normal(6).reshape(2, 3), "float32"),
    "column": (np.arange(5.0).reshape(5, 1), "float32"),
    "nested_3d": (rng_normal(24, 1).reshape(2, 3, 4), "float32"),
    "nested_4d": (np.arange(16).reshape(2, 2, 2, 2), "int64"),
    "unit_dims": (np.ones((1, 1, 1)), "float64"),
    "long_row": (rng_normal(40, 2), "float32"),
    "long_int_row": (np.arange(100), "int32"),
    "wide_matrix": (rng_normal(90, 3).reshape(3, 30), "float32"),
    "suffix_wraps_exactly": (np.arange(1.0, 14.0), "float32"),
    "suffix_fits_exactly": (np.arange(1.0, 13.0), "float32"),
    # summarization
    "threshold_exactly_1000": (np.arange(1000.0), "float32"),
    "summarized_1d": (np.arange(1001.0), "float32"),
    "summarized_1d_random": (rng_normal(2000, 4), "float64"),
    "summarized_2d": (rng_normal(2500, 5).reshape(50, 50), "float32"),
    "summarized_3d": (np.arange(1728).reshape(12, 12, 12), "int64"),
    "summarized_narrow": (np.arange(2000.0).reshape(1000, 2), "float32"),
    "summarized_hidden_outlier": (np.r_[np.ones(500), 1e9, np.ones(500)], "float32"),
    "summarized_bool": (np.arange(1200).reshape(40, 30) % 3 == 0, "bool"),
}


@pytest.mark.parametrize("name", sorted(FIXED))
def test_fixed_cases_match_torch(name):
    values, dtype = FIXED[name]
    assert_matches_torch(np.asarray(values, dtype=NP_DTYPES[dtype]), dtype)


def test_design_examples():
    # DESIGN.md's own examples, spelled out once.
    assert formatting.format_tensor(np.float32(9.0), "float32", ["grad_fn=<PowBackward0>"]) == (
        "tensor(9., grad_fn=<PowBackward0>)"
    )
    assert formatting.format_tensor(np.array([2, 4, 6], np.float32) / 3, "float32") == (
        "tensor([0.6667, 1.3333, 2.0000])"
    )
    x = torch.tensor(3.0, requires_grad=True)
    assert repr(x**2) == "tensor(9., grad_fn=<PowBackward0>)"
    assert formatting.format_tensor(np.float32(3.0), "float32", ["requires_grad=True"]) == repr(x)


def test_suffixes_keep_their_order_after_torch_items():
    values = np.zeros((0, 3))
    tensor = torch.zeros(0, 3, dtype=torch.float64, requires_grad=True) * 1
    got = formatting.format_tensor(values, "float64", ["grad_fn=<MulBackward0>"])
    assert got == repr(tensor)
    assert got.endswith("size=(0, 3), dtype=torch.float64, grad_fn=<MulBackward0>)")


OPTION_CASES = [
    ({"precision": 10}, [0.1, 0.25], "float32"),
    ({"precision": 10}, [0.1, 0.25], "float64"),
    ({"precision": 0}, [0.4, 1.6, -2.5], "float32"),
    ({"precision": 2}, [1e-7, 3.0], "float32"),
    ({"sci_mode": True}, [1.0, 2.5], "float32"),
    ({"sci_mode": True}, [1.0, 2.0], "float64"),
    ({"sci_mode": False}, [1e-7, 1e9], "float32"),
    ({"sci_mode": False}, [1e20, -3.0], "float64"),
    ({"threshold": 5}, np.arange(10), "int64"),
    ({"threshold": 5, "edgeitems": 1}, np.arange(24.0).reshape(2, 3, 4), "float32"),
    ({"threshold": 5, "edgeitems": 0}, np.arange(10.0), "float32"),
    ({"threshold": 5, "edgeitems": 0}, np.arange(24.0).reshape(4, 6), "float64"),
    ({"edgeitems": 0}, [1.0, 2.0], "float32"),
    ({"linewidth": 20}, np.arange(12.0), "float32"),
    ({"linewidth": 1}, np.arange(4), "int64"),
    ({"profile": "short"}, rng_normal(1500, 6), "float32"),
    ({"profile": "full"}, np.arange(1200), "int64"),
    ({"profile": "full", "precision": 6}, rng_normal(5, 7), "float64"),
]


@pytest.mark.parametrize(("options", "values", "dtype"), OPTION_CASES)
def test_printoptions_match_torch(options, values, dtype, restore_printoptions):
    set_both(**options)
    assert formatting.get_printoptions() == torch._tensor_str.get_printoptions()
    assert_matches_torch(np.asarray(values, dtype=NP_DTYPES[dtype]), dtype)


def test_printoptions_profile_then_override_and_reset(restore_printoptions):
    set_both(profile="short", precision=7, sci_mode=True)
    assert formatting.get_printoptions() == {"precision": 7, "threshold": 1000, "edgeitems": 2,
                                             "linewidth": 80, "sci_mode": True}
    set_both(linewidth=50)  # like torch, leaving sci_mode out resets it to automatic
    assert formatting.get_printoptions() == torch._tensor_str.get_printoptions()
    assert formatting.get_printoptions()["sci_mode"] is None
    set_both(profile="default")
    assert formatting.format_tensor(np.array([1.12345]), "float32") == "tensor([1.1235])"


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="unsupported dtype 'complex64'"):
        formatting.format_tensor(np.zeros(2), "complex64")


def test_module_does_not_import_torch():
    probe = ("import sys, gradserve.surface.formatting;"
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


# --- random tensors -------------------------------------------------------------------------

# Largest size per dimension, by rank: enough to go past the 1000-element threshold.
MAX_DIM = {0: 0, 1: 1500, 2: 50, 3: 14, 4: 8}
FLOAT_KINDS = ["normal", "tiny", "huge", "mixed", "integer", "big_integer", "zeros", "unit"]
INT_KINDS = ["small", "medium", "extreme"]


@st.composite
def shapes(draw):
    rank = draw(st.integers(0, 4))
    return tuple(draw(st.integers(0, MAX_DIM[rank])) for _ in range(rank))


def random_values(shape, dtype, kind, specials, seed):
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    if dtype == "bool":
        return rng.random(n).reshape(shape) < 0.5
    if dtype.startswith("int"):
        info = np.iinfo(NP_DTYPES[dtype])
        low, high = {"small": (-9, 10), "medium": (-100_000, 100_000),
                     "extreme": (info.min, info.max)}[kind]
        return rng.integers(low, high, n, dtype=NP_DTYPES[dtype], endpoint=True).reshape(shape)
    signs = rng.choice([-1.0, 1.0], n)
    values = {
        "normal": lambda: rng.standard_normal(n),
        "tiny": lambda: rng.standard_normal(n) * 1e-7,
        "huge": lambda: rng.standard_normal(n) * 1e12,
        "mixed": lambda: signs * 10.0 ** rng.uniform(-12, 12, n),
        "integer": lambda: rng.integers(-1000, 1000, n).astype(np.float64),
        "big_integer": lambda: rng.integers(-(10**10), 10**10, n).astype(np.float64),
        "zeros": lambda: signs * 0.0,
        "unit": lambda: rng.random(n),
    }[kind]()
    if specials and n:
        spots = rng.random(n) < 0.2
        values[spots] = rng.choice([nan, inf, -inf, -0.0, 0.0], int(spots.sum()))
    return values.astype(NP_DTYPES[dtype]).reshape(shape)


@st.composite
def random_tensors(draw):
    dtype = draw(st.sampled_from(sorted(NP_DTYPES)))
    kinds = FLOAT_KINDS if dtype.startswith("float") else INT_KINDS
    kind = draw(st.sampled_from(kinds))
    specials = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    return random_values(draw(shapes()), dtype, kind, specials, seed), dtype


@settings(max_examples=300, deadline=None)
@given(random_tensors())
def test_random_tensors_match_torch(case):
    values, dtype = case
    assert_matches_torch(values, dtype)


@settings(max_examples=200, deadline=None)
@given(
    random_tensors(),
    st.fixed_dictionaries({}, optional={
        "precision": st.integers(0, 8),
        "threshold": st.integers(0, 300),
        "edgeitems": st.integers(0, 4),
        "linewidth": st.integers(1, 150),
        "profile": st.sampled_from(["default", "short", "full"]),
        "sci_mode": st.sampled_from([None, True, False]),
    }),
)
def test_random_tensors_with_random_printoptions_match_torch(case, options):
    values, dtype = case
    try:
        set_both(**options)
        assert_matches_torch(values, dtype)
    finally:
        torch.set_printoptions(profile="default")
        formatting.set_printoptions(profile="default")
