"""OpInfos for engine/ops_rnn.py: one float32 LSTM layer-direction (`mkldnn_rnn_layer`).

The op is float32 only (as torch's: oneDNN has no float64 RNN), so it has no float64
finite-difference check (`float32_only`); the comparison with torch (the suite's,
oneDNN at AVX2: a few ulps from the AVX-512 rounding the engine follows) is within the
tolerances. tests/test_engine_lstm_onednn.py compares bits with an uncapped torch.
"""

from __future__ import annotations

from typing import Any

from tests.reference import torch

from .opinfo import OpInfo, Sample


def _layer(seq: int, batch: int, features: int, hidden: int) -> tuple[Any, ...]:
    gates = 4 * hidden
    return ((seq, batch, features), (gates, features), (gates, hidden), (gates,), (gates,),
            (batch, hidden), (batch, hidden))


def _mkldnn_rnn_layer(*args: Any, reverse: bool = False, hidden_size: int = 0,
                      **attrs: Any) -> Any:
    return torch.mkldnn_rnn_layer(*args, reverse, [], 2, hidden_size, 1, True, False, False,
                                  True)


OPINFOS = [
    OpInfo("mkldnn_rnn_layer", _mkldnn_rnn_layer, [
        Sample(_layer(3, 2, 4, 5), {"reverse": False, "hidden_size": 5}),
        Sample(_layer(4, 3, 2, 3), {"reverse": True, "hidden_size": 3}),
        Sample(_layer(1, 5, 3, 2), {"reverse": False, "hidden_size": 2},
               requires_grad=(False, True, True, False, True, True, False)),
    ], outputs=(0, 1, 2), float32_only=True),
]
