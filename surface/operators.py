"""Python's operator protocol as op names: the one hand-written mapping, read by the engine's
Tensor and the client's Tensor alike."""

BINARY = {"__add__": "add", "__sub__": "sub", "__mul__": "mul", "__truediv__": "div",
          "__floordiv__": "floor_divide", "__mod__": "remainder", "__pow__": "pow",
          "__matmul__": "matmul", "__lt__": "lt", "__le__": "le", "__gt__": "gt",
          "__ge__": "ge", "__eq__": "eq", "__ne__": "ne", "__and__": "logical_and",
          "__or__": "logical_or", "__xor__": "logical_xor",
          "__radd__": "add", "__rmul__": "mul"}
"""`x <op> y` is op(x, y); so is `y + x` and `y * x` (torch's __radd__/__rmul__ keep the tensor
first: `1 + x` is add(x, 1), whose grad_fn.next_functions list x's node first)."""
REFLECTED = {"__rsub__": "sub", "__rpow__": "pow",
             "__rfloordiv__": "floor_divide", "__rmod__": "remainder", "__rmatmul__": "matmul",
             "__rand__": "logical_and", "__ror__": "logical_or", "__rxor__": "logical_xor"}
"""`y <op> x`, when y does not handle it: op(y, x)."""
UNARY = {"__neg__": "neg", "__abs__": "abs", "__invert__": "logical_not"}
"""`-x`, `abs(x)`, `~x`."""
AUGMENTED = {"__iadd__": "add", "__isub__": "sub", "__imul__": "mul", "__itruediv__": "div"}
"""`x <op>= y` is the op's in-place variant (`add_`) on x."""
