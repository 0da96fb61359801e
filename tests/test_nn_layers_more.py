"""The layers of nn_sampling.py, ConvTranspose, GroupNorm, InstanceNorm, Unflatten and
scaled_dot_product_attention against torch, in process and through a session (`gradserve_lib`):
grad_fns, the bits where they are torch's, the tolerance where they are not (stated per case),
seeded initialisation, functional forms and error texts. The modules' reprs, parameters and
gradients are also compared in tests/nn_cases.py."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.nn_cases import np_of
from tests.reference import raises_like, torch

RNG = np.random.default_rng(5)

# name -> (call given the library (torch or gradserve's) and the input, input shape, exact forward,
# torch's grad_fn when ours is the same, else None). Not exact: conv_transpose (oneDNN's
# deconvolution order, within a few ulp), bilinear (torch's 2-d kernel's order), 4-D attention
# (torch's flash kernel), 3-D attention (the engine's batched matmul): 1e-5 relative.
FUNCTIONAL: dict[str, tuple[Callable[[Any, Any], Any], tuple[int, ...], bool, str | None]] = {
    "conv_transpose2d": (
        lambda t, x: _F(t).conv_transpose2d(
            x, _weight(t, (4, 3, 3, 3)), None, stride=2, padding=1, output_padding=1
        ),
        (2, 4, 5, 5),
        False,
        "ConvolutionBackward0",
    ),
    "conv_transpose1d": (
        lambda t, x: _F(t).conv_transpose1d(x, _weight(t, (3, 2, 3)), stride=2),
        (2, 3, 7),
        False,
        "ConvolutionBackward0",
    ),
    "group_norm": (
        lambda t, x: _F(t).group_norm(x, 3, _weight(t, (6,)), _weight(t, (6,))),
        (3, 6, 5, 5),
        True,
        "NativeGroupNormBackward0",
    ),
    "group_norm_2d_input": (
        lambda t, x: _F(t).group_norm(x, 2),
        (5, 8),
        True,
        "NativeGroupNormBackward0",
    ),
    "instance_norm": (lambda t, x: _F(t).instance_norm(x), (2, 3, 4, 5), True, "ViewBackward0"),
    "adaptive_avg_pool2d": (
        lambda t, x: _F(t).adaptive_avg_pool2d(x, (3, 4)),
        (2, 3, 7, 9),
        True,
        None,
    ),
    "global_avg_pool": (
        lambda t, x: _F(t).adaptive_avg_pool2d(x, 1),
        (2, 3, 7, 9),
        True,
        "MeanBackward1",
    ),
    "adaptive_avg_pool1d": (
        lambda t, x: _F(t).adaptive_avg_pool1d(x, 4),
        (2, 3, 11),
        True,
        "SqueezeBackward1",
    ),
    "adaptive_max_pool2d": (
        lambda t, x: _F(t).adaptive_max_pool2d(x, (4, 3)),
        (2, 3, 7, 9),
        True,
        None,
    ),
    "nearest": (
        lambda t, x: _F(t).interpolate(x, scale_factor=2),
        (2, 3, 4, 5),
        True,
        "UpsampleNearest2DBackward0",
    ),
    "nearest_size": (
        lambda t, x: _F(t).interpolate(x, size=(7, 3)),
        (2, 3, 4, 5),
        True,
        "UpsampleNearest2DBackward0",
    ),
    "nearest_1d_fraction": (
        lambda t, x: _F(t).interpolate(x, scale_factor=1.7),
        (2, 3, 6),
        True,
        "UpsampleNearest1DBackward0",
    ),
    "linear": (lambda t, x: _F(t).interpolate(x, size=13, mode="linear"), (2, 3, 6), True, None),
    "linear_align_corners": (
        lambda t, x: _F(t).interpolate(x, scale_factor=3, mode="linear", align_corners=True),
        (2, 3, 4),
        True,
        None,
    ),
    "bilinear": (
        lambda t, x: _F(t).interpolate(x, size=(7, 9), mode="bilinear"),
        (2, 3, 4, 5),
        False,
        None,
    ),
    "bilinear_align_corners": (
        lambda t, x: _F(t).interpolate(
            x, scale_factor=(1.5, 2.5), mode="bilinear", align_corners=True
        ),
        (2, 3, 4, 5),
        False,
        None,
    ),
    "unflatten": (
        lambda t, x: x.unflatten(-1, (2, -1)) * 2,
        (3, 6),
        True,
        "MulBackward0",
    ),
    "pad": (
        lambda t, x: _F(t).pad(x, (1, 2, -1, 1), value=0.25),
        (2, 3, 4, 5),
        True,
        "ConstantPadNdBackward0",
    ),
    "pixel_shuffle": (lambda t, x: _F(t).pixel_shuffle(x, 2), (2, 8, 3, 4), True, None),
    "pixel_unshuffle": (lambda t, x: _F(t).pixel_unshuffle(x, 3), (1, 2, 6, 3), True, None),
    "sdpa_2d": (
        lambda t, x: _F(t).scaled_dot_product_attention(x, x * 0.5, x),
        (5, 8),
        True,
        "MmBackward0",
    ),
    "sdpa_3d_causal": (
        lambda t, x: _F(t).scaled_dot_product_attention(x, x, x, is_causal=True),
        (2, 5, 8),
        False,
        "UnsafeViewBackward0",
    ),
    "sdpa_3d_bool_mask": (
        lambda t, x: _F(t).scaled_dot_product_attention(x, x, x * 2, attn_mask=_mask(t), scale=0.3),
        (2, 5, 8),
        False,
        "UnsafeViewBackward0",
    ),
    "sdpa_4d": (
        lambda t, x: _F(t).scaled_dot_product_attention(x, x.flip(-1), x),
        (2, 3, 5, 8),
        False,
        None,
    ),
}


def _F(t: Any) -> Any:
    return t.nn.functional


_WEIGHTS: dict[tuple[int, ...], np.ndarray] = {}


def _weight(t: Any, shape: tuple[int, ...]) -> Any:
    """The same random weight (no gradient) in either library, one per shape."""
    if shape not in _WEIGHTS:
        _WEIGHTS[shape] = RNG.standard_normal(shape).astype(np.float32)
    return t.tensor(_WEIGHTS[shape])


def _mask(t: Any) -> Any:
    return t.tensor(np.tril(np.ones((5, 5), dtype=bool)) | np.eye(5, k=2, dtype=bool))


@pytest.mark.parametrize("case", list(FUNCTIONAL))
def test_functional_matches_torch(gradserve_lib, case: str):
    call, shape, exact, grad_fn = FUNCTIONAL[case]
    x = RNG.standard_normal(shape).astype(np.float32)
    ours = gradserve_lib.tensor(x, requires_grad=True)
    theirs = torch.tensor(x, requires_grad=True)
    out, want = call(gradserve_lib, ours), call(torch, theirs)
    if exact:
        np.testing.assert_array_equal(np_of(out), np_of(want))
    else:
        np.testing.assert_allclose(np_of(out), np_of(want), rtol=1e-5, atol=1e-6)
    if grad_fn is not None:
        assert want.grad_fn.name() == grad_fn
        assert out.grad_fn.name() == grad_fn
    v = RNG.standard_normal(tuple(want.shape)).astype(np.float32)
    (out * gradserve_lib.tensor(v)).sum().backward()
    (want * torch.tensor(v)).sum().backward()
    if case.startswith(("nearest", "adaptive")) or case in ("instance_norm", "pad"):
        np.testing.assert_array_equal(np_of(ours.grad), np_of(theirs.grad))
    else:
        np.testing.assert_allclose(np_of(ours.grad), np_of(theirs.grad), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "factory",
    [
        lambda t: t.nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2),
        lambda t: t.nn.ConvTranspose1d(3, 5, 4, bias=False),
        lambda t: t.nn.GroupNorm(2, 4),
        lambda t: t.nn.InstanceNorm2d(3, affine=True, track_running_stats=True),
        lambda t: t.nn.Sequential(
            t.nn.Upsample(scale_factor=2),
            t.nn.Unflatten(1, (1, 3)),
            t.nn.PixelShuffle(1),
            t.nn.AdaptiveAvgPool1d(2),
            t.nn.Linear(2, 3),
        ),
    ],
    ids=["conv_transpose2d", "conv_transpose1d", "group_norm", "instance_norm", "sequential"],
)
def test_seeded_initialisation_is_torchs(gradserve_lib, factory):
    """Under one manual_seed the layers draw torch's numbers: the same RNG consumption."""
    torch.manual_seed(3)
    want = factory(torch)
    gradserve_lib.manual_seed(3)
    got = factory(gradserve_lib)
    assert repr(got) == repr(want)
    for (name, p), (_, q) in zip(got.state_dict().items(), want.state_dict().items()):
        np.testing.assert_array_equal(np_of(p), np_of(q), err_msg=name)
    assert gradserve_lib.rand(3).tolist() == torch.rand(3).tolist()


def test_conv_transpose_output_size_matches_torch(gradserve_lib):
    layer, reference = (
        gradserve_lib.nn.ConvTranspose2d(2, 3, 3, stride=2),
        torch.nn.ConvTranspose2d(2, 3, 3, stride=2),
    )
    x = RNG.standard_normal((1, 2, 4, 4)).astype(np.float32)
    layer.load_state_dict(
        {k: gradserve_lib.tensor(v.detach().numpy()) for k, v in reference.state_dict().items()}
    )
    out = layer(gradserve_lib.tensor(x), output_size=[10, 9])
    want = reference(torch.tensor(x), output_size=[10, 9])
    assert tuple(out.shape) == tuple(want.shape) == (1, 3, 10, 9)
    np.testing.assert_allclose(np_of(out), np_of(want), rtol=1e-5, atol=1e-6)
    raises_like(
        lambda: layer(gradserve_lib.tensor(x), output_size=[12, 9]),
        lambda: reference(torch.tensor(x), output_size=[12, 9]),
    )


def test_instance_norm_eval_uses_running_statistics(gradserve_lib):
    ours = gradserve_lib.nn.InstanceNorm1d(3, track_running_stats=True)
    theirs = torch.nn.InstanceNorm1d(3, track_running_stats=True)
    for _ in range(2):
        x = RNG.standard_normal((4, 3, 6)).astype(np.float32)
        ours(gradserve_lib.tensor(x))
        theirs(torch.tensor(x))
    ours.eval()
    theirs.eval()
    x = RNG.standard_normal((4, 3, 6)).astype(np.float32)
    np.testing.assert_array_equal(
        np_of(ours(gradserve_lib.tensor(x))), np_of(theirs(torch.tensor(x)))
    )
    np.testing.assert_array_equal(np_of(ours.running_var), np_of(theirs.running_var))


def _errors(t: Any) -> list[Callable[[], Any]]:
    F, nn = t.nn.functional, t.nn
    x = t.zeros(2, 3, 5, 5)
    return [
        lambda: F.adaptive_avg_pool2d(t.zeros(3, 4), 2),
        lambda: F.adaptive_avg_pool1d(t.zeros(3), 2),
        lambda: F.adaptive_max_pool2d(t.zeros(3, 4), 2),
        lambda: F.interpolate(x, size=(0, 3)),
        lambda: F.interpolate(t.zeros(2, 3, 7), size=0, mode="linear"),
        lambda: F.interpolate(x, size=3, scale_factor=2),
        lambda: F.interpolate(x),
        lambda: F.interpolate(x, size=(3, 4, 5)),
        lambda: F.interpolate(x, scale_factor=(2, 3, 4)),
        lambda: F.interpolate(x, size=4, align_corners=True),
        lambda: F.interpolate(x, size=4, mode="linear"),
        lambda: F.interpolate(t.zeros(2, 3, 7), size=4, mode="bilinear"),
        lambda: F.interpolate(x, size=4, recompute_scale_factor=True),
        lambda: F.pixel_shuffle(t.zeros(1, 7, 2, 2), 2),
        lambda: F.pixel_shuffle(t.zeros(7, 2), 2),
        lambda: F.conv_transpose2d(x, t.zeros(4, 2, 3, 3)),
        lambda: F.conv_transpose2d(x, t.zeros(3, 2, 3, 3), output_padding=1),
        lambda: F.conv_transpose2d(t.zeros(1, 3, 1, 1), t.zeros(3, 2, 3, 3), padding=3),
        lambda: F.conv_transpose1d(t.zeros(2, 3, 4, 4), t.zeros(3, 2, 3)),
        lambda: F.group_norm(x, 2),
        lambda: F.group_norm(t.zeros(3), 1),
        lambda: F.group_norm(x, 3, t.zeros(4)),
        lambda: F.group_norm(t.zeros(1, 3), 3),
        lambda: F.group_norm(t.zeros(2, 3, dtype=t.int64), 3),
        lambda: F.instance_norm(t.zeros(2, 3, 1)),
        lambda: F.instance_norm(t.zeros(2, 3, 4), use_input_stats=False),
        lambda: F.scaled_dot_product_attention(x[0], x[0], x[0], attn_mask=x[0, 0], is_causal=True),
        lambda: F.pad(x, (1, 2, 3)),
        lambda: F.pad(x, (1,) * 10),
        lambda: F.pad(x, (-3, -3)),
        lambda: nn.GroupNorm(2, 3),
        lambda: nn.Unflatten(1, (2, 3.0)),
        lambda: nn.Unflatten(1, (4, 2))(t.zeros(2, 6)),
        lambda: t.zeros(2, 6).unflatten(1, (-1, 4)),
        lambda: t.unflatten(t.zeros(2, 6), 2, (2, 3)),
        lambda: nn.ConvTranspose2d(2, 2, 3, padding_mode="reflect"),
        lambda: nn.InstanceNorm1d(3)(t.zeros(2, 3, 4, 4)),
        lambda: nn.InstanceNorm2d(3, affine=True)(t.zeros(2, 4, 4, 4)),
    ]


@pytest.mark.parametrize("index", range(len(_errors(torch))))
def test_errors_are_torchs(gradserve_lib, index: int):
    def run(t: Any) -> Any:
        out = _errors(t)[index]()
        return out.tolist()  # a session raises when it runs the recorded ops

    raises_like(lambda: run(gradserve_lib), lambda: run(torch))


def test_interpolate_refuses_what_it_does_not_reproduce(gradserve_lib):
    x = gradserve_lib.zeros(1, 1, 4, 4)
    with pytest.raises(NotImplementedError, match="bicubic"):
        gradserve_lib.nn.functional.interpolate(x, size=3, mode="bicubic")
    with pytest.raises(NotImplementedError, match="antialias"):
        gradserve_lib.nn.functional.interpolate(x, size=3, mode="bilinear", antialias=True)


PROGRAMS = Path(__file__).resolve().parent.parent / "examples" / "nn_layers"


@pytest.mark.parametrize("program", ["conv_autoencoder", "groupnorm_cnn", "causal_attention"])
def test_example_programs_print_what_torch_prints(gradserve_lib, capsys, program: str):
    """examples/nn_layers/*.py (plain torch code: seeded init, training, printed tensors and
    modules) print the same lines with torch and with gradserve standing in for it."""
    spec = importlib.util.spec_from_file_location(program, PROGRAMS / f"{program}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(torch)
    want = capsys.readouterr().out
    module.main(gradserve_lib)
    got = capsys.readouterr().out
    assert got.splitlines() == want.splitlines()


def test_sizes_from_arguments_are_bounded_before_the_server_allocates(gradserve_client):
    """A transposed convolution's stride or dilation, or interpolate's size, that would make a
    huge result is refused by the op's declared bound, not tried."""
    with gradserve_client.session() as t:
        x, w = t.zeros(1, 1, 2, 2), t.zeros(1, 1, 3, 3)
        F = t.nn.functional
        for call in (lambda: F.conv_transpose2d(x, w, stride=10**9, output_padding=5),
                     lambda: F.conv_transpose2d(x, w, dilation=10**12),
                     lambda: F.interpolate(x, size=(10**6, 10**6))):
            with pytest.raises(RuntimeError, match="more than the limit"):
                call().sum().item()
        assert t.ones(2).sum().item() == 2.0  # the session still works
