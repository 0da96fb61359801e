"""Python's operator protocol as op names: the one hand-written mapping, read by the engine's
Tensor and the client's Tensor alike."""

BINARY = {"__add__": "add", "__sub__": "sub", "__mul__": "mul", "__truediv__": "div",
          "__floordiv__": "floor_divide", "__mod__": "remainder", "__pow__": "pow",
          "__matmul__": "matmul", "__lt__": "lt", "__le__": "le", "__gt__": "gt",
          "__ge__": "ge", "__eq__": "eq", "__ne__": "ne", "__and__": "bitwise_and",
          "__or__": "bitwise_or", "__xor__": "bitwise_xor", "__lshift__": "bitwise_left_shift",
          "__rshift__": "bitwise_right_shift", "__radd__": "add", "__rmul__": "mul",
          "__rand__": "bitwise_and", "__ror__": "bitwise_or", "__rxor__": "bitwise_xor"}
"""`x <op> y` is op(x, y); so is `y + x`, `y * x` and `y & x` (torch's __radd__, __rmul__,
__rand__, __ror__ and __rxor__ keep the tensor first: `1 + x` is add(x, 1), whose
grad_fn.next_functions list x's node first)."""
REFLECTED = {"__rsub__": "sub", "__rpow__": "pow",
             "__rfloordiv__": "floor_divide", "__rmod__": "remainder", "__rmatmul__": "matmul",
             "__rlshift__": "bitwise_left_shift", "__rrshift__": "bitwise_right_shift"}
"""`y <op> x`, when y does not handle it: op(y, x)."""
UNARY = {"__neg__": "neg", "__abs__": "abs"}
"""`-x`, `abs(x)`."""
INVERT = "bitwise_not"
"""`~x`, once the layer has refused a floating x with `INVERT_MESSAGE` (torch's TypeError of the
operator, where `bitwise_not` raises its NotImplementedError)."""
INVERT_MESSAGE = "~ (operator.invert) is only implemented on integer and Boolean-type tensors"
ARRAY_COMPARED = "__eq__"
"""The one operator torch applies to a numpy array operand, read as a tensor (`x == a`, and
`a == x` through numpy's reflection); the others return NotImplemented, leaving it to numpy
(`x + a` is numpy's, wrapped back into a tensor by __array_wrap__), and `a / x` is
`reciprocal(x) * a`, whose `*` is numpy's."""
AUGMENTED = {"__iadd__": "add", "__isub__": "sub", "__imul__": "mul", "__itruediv__": "div",
             "__iand__": "bitwise_and", "__ior__": "bitwise_or", "__ixor__": "bitwise_xor",
             "__ilshift__": "bitwise_left_shift", "__irshift__": "bitwise_right_shift"}
"""`x <op>= y` is the op's in-place variant (`add_`) on x."""
