"""Python's operator protocol as op names: the one hand-written mapping, read by the engine's
Tensor and the client's Tensor alike."""

BINARY = {"__add__": "add", "__sub__": "sub", "__mul__": "mul", "__truediv__": "div",
          "__floordiv__": "floor_divide", "__mod__": "remainder", "__pow__": "pow",
          "__matmul__": "matmul", "__lt__": "lt", "__le__": "le", "__gt__": "gt",
          "__ge__": "ge", "__eq__": "eq", "__ne__": "ne", "__and__": "logical_and",
          "__or__": "logical_or", "__xor__": "logical_xor"}
"""`x <op> y` is op(x, y)."""
REFLECTED = {"__radd__": "add", "__rsub__": "sub", "__rmul__": "mul", "__rpow__": "pow",
             "__rfloordiv__": "floor_divide", "__rmod__": "remainder", "__rmatmul__": "matmul",
             "__rand__": "logical_and", "__ror__": "logical_or", "__rxor__": "logical_xor"}
"""`y <op> x`, when y does not handle it: op(y, x)."""
UNARY = {"__neg__": "neg", "__abs__": "abs", "__invert__": "logical_not"}
"""`-x`, `abs(x)`, `~x`."""
AUGMENTED = {"__iadd__": "add", "__isub__": "sub", "__imul__": "mul", "__itruediv__": "div"}
"""`x <op>= y` is the op's in-place variant (`add_`) on x."""
