"""The corpus: PyTorch's own documentation examples, named by where they live in the torch wheel.

Each entry names the torch object whose docstring holds the example and the example's index
among that docstring's examples; tests/corpus/examples.py extracts its text from the installed
torch at test time (the text is never committed) and applies the entry's mechanical edits, by
the rules in tests/corpus/README.md:

- imports: import lines beyond the three every example gets (`import torch`,
  `import torch.nn as nn`, `import torch.nn.functional as F`), for names a docstring uses
  without importing them;
- preamble: assignments defining names a docstring uses but leaves undefined (`model`,
  `input`, ...), each listed here;
- echo: expressions appended after the example and echoed, for an example that computes a
  result without showing it, or only defines a class (then the expression instantiates and
  applies it).

Every example also gets `torch.manual_seed(0)` first. Source: the torch==2.13.0 wheel (the dev
extra), the file named per entry; licence: BSD-3-Clause (PyTorch; the wheel's
torch-2.13.0+cpu.dist-info/licenses/LICENSE).
"""

from __future__ import annotations

from dataclasses import dataclass

from gradserve.engine import mkl

TORCH_VERSION = "2.13.0"
SOURCE = f"torch=={TORCH_VERSION} wheel"
LICENCE = "BSD-3-Clause (PyTorch)"

# what an example covers (issue 11 lists the last four)
NN = "nn modules"
OPTIM = "optimizers"
RANDOM = "seeded randomness"
FUNCTION = "custom autograd.Function"
HOOKS = "hooks"
HIGHER = "higher-order gradients"
TENSOR = "tensor ops"

# Features being merged into main now; an example that needs one is a strict xfail naming it.
EXTEND = "branch extend (custom autograd.Function, hooks, autograd.functional)"
EXTRAS = "branch extras (torch.pi, autograd.Variable, optim.RMSprop, torch.utils.data)"
SUMEXACT = "branch sumexact (bit-exact float32 sums)"


def needs(feature: str, first: str) -> str:
    """An xfail reason: the missing feature, and the first line where the outputs differ."""
    return f"needs {feature}; first difference: {first}"


# Why an example does not match yet: the missing feature, and the first line that differs.
# A batch-1 conv2d is torch's slow_conv2d: im2col, then one sgemm with the bias as C; the
# engine makes that very call with MKL (the mkl extra, installed with the test extra). Without
# MKL the product is numpy's or gemm.py's emulation, which does not cover 10 output channels.
PRELU = "" if mkl.available() else needs(
    "MKL (the mkl extra) for conv2d's bits: the example's conv is torch's slow_conv2d, an MKL "
    "sgemm with 10 output channels", "line 48: torch '7.1005e-01', gradserve '7.1006e-01'")
NO_FUNCTION = needs(f"custom torch.autograd.Function ({EXTEND})",
                    "line 1: the run ends with ImportError: cannot import name 'Function' from "
                    "'<unknown module name>' (unknown location)")
NO_HOOK = needs(f"Tensor.register_hook ({EXTEND})", "line 1: the run ends with AttributeError: "
                "gradserve does not implement torch.Tensor.register_hook")
NO_FUNCTIONAL = needs(f"torch.autograd.functional ({EXTEND})",
                      "line 1: the run ends with ModuleNotFoundError: No module named "
                      "'torch.autograd.functional'; 'torch.autograd' is not a package")


@dataclass(frozen=True)
class Example:
    """One documentation example, where it lives and the mechanical edits it runs with."""

    name: str  # the test id
    obj: str  # dotted path of the torch object whose docstring holds the example
    index: int  # 0-based, among that docstring's examples of `kind`
    file: str  # the wheel file the docstring is written in, relative to site-packages
    covers: tuple[str, ...]
    # "doctest": a run of `>>>` lines; "literal": a reST `::` block; "module": a whole file of
    # the torch wheel run as a program; "pypi": a whole file vendored from a PyPI distribution
    # under tests/corpus/pypi (`vendored`), run as a program
    kind: str = "doctest"
    imports: tuple[str, ...] = ()
    preamble: tuple[str, ...] = ()
    echo: tuple[str, ...] = ()
    xfail: str = ""  # why it does not match yet: the missing feature and first differing line
    # kind "pypi" only: the distribution ("micrograd==0.1.0 sdist"), its licence, and the copy's
    # path relative to tests/corpus (its header repeats all three)
    package: str = ""
    package_licence: str = ""
    vendored: str = ""

    @property
    def source(self) -> str:
        """Where the example's text comes from."""
        if self.kind == "pypi":
            return f"PyPI {self.package}, {self.file}"
        return f"{SOURCE}, {self.file}, {self.obj}"

    @property
    def licence(self) -> str:
        """The licence of the example's text."""
        return self.package_licence if self.kind == "pypi" else LICENCE


MODULES = "torch/nn/modules"
EXPORTDB = "torch/_export/db/examples"
EXPORTDB_MODULE = "torch._export.db.examples"
ECHO_MODEL = ("model(*example_args)",)


def exportdb(name: str, xfail: str = "", echo: tuple[str, ...] = ECHO_MODEL) -> Example:
    """ExportDB's example program `name` (a file of the torch wheel), echoing its model's output."""
    return Example(f"exportdb_{name}", f"{EXPORTDB_MODULE}.{name}", 0, f"{EXPORTDB}/{name}.py",
                   (NN, RANDOM), kind="module", echo=echo, xfail=xfail)
# lr_scheduler examples: the model, optimizer and the two functions their loops call
LR_SCHEDULER_PREAMBLE = (
    "model = nn.Linear(4, 16)", "input = torch.randn(8, 4)", "target = torch.randn(8, 16)",
    "loss_fn = nn.MSELoss()", "optimizer = torch.optim.SGD(model.parameters(), lr=0.05)",
    "train = lambda *args: (optimizer.zero_grad(), loss_fn(model(input), target).backward(), "
    "optimizer.step())",
    "validate = lambda *args: loss_fn(model(input), target)")
LAMBDA_LR_GROUPS = ("optimizer = torch.optim.SGD([{'params': [model.weight]}, "
                    "{'params': [model.bias]}], lr=0.05)", "opt = optimizer")
LR_SCHEDULER_ECHO = ("scheduler.get_last_lr()", "optimizer.param_groups[0]['lr']",
                     "model.weight", "model.bias")
TORCH_DOCS = "torch/_torch_docs.py"

EXAMPLES: tuple[Example, ...] = (
    # --- nn modules -------------------------------------------------------------------------
    Example("linear", "torch.nn.modules.linear.Linear", 0, f"{MODULES}/linear.py", (NN,),
            echo=("output",)),
    Example("bilinear", "torch.nn.modules.linear.Bilinear", 0, f"{MODULES}/linear.py", (NN,),
            echo=("output",)),
    Example("sequential_append", "torch.nn.modules.container.Sequential.append", 0,
            f"{MODULES}/container.py", (NN,)),
    Example("sequential_insert", "torch.nn.modules.container.Sequential.insert", 0,
            f"{MODULES}/container.py", (NN,)),
    Example("sequential_extend", "torch.nn.modules.container.Sequential.extend", 0,
            f"{MODULES}/container.py", (NN,)),
    Example("module_list", "torch.nn.modules.container.ModuleList", 0,
            f"{MODULES}/container.py", (NN,), kind="literal",
            echo=("MyModule()(torch.randn(2, 10))",)),
    Example("module_dict", "torch.nn.modules.container.ModuleDict", 0,
            f"{MODULES}/container.py", (NN,), kind="literal",
            echo=('MyModule()(torch.randn(1, 10, 9, 9), "conv", "prelu")',), xfail=PRELU),
    Example("module_apply", "torch.nn.modules.module.Module.apply", 0,
            f"{MODULES}/module.py", (NN,)),
    Example("embedding", "torch.nn.modules.sparse.Embedding", 0, f"{MODULES}/sparse.py",
            (NN, RANDOM)),
    Example("embedding_padding_idx", "torch.nn.modules.sparse.Embedding", 1,
            f"{MODULES}/sparse.py", (NN, RANDOM)),
    Example("layer_norm", "torch.nn.modules.normalization.LayerNorm", 0,
            f"{MODULES}/normalization.py", (NN, RANDOM)),
    Example("dropout", "torch.nn.modules.dropout.Dropout", 0, f"{MODULES}/dropout.py",
            (NN, RANDOM), echo=("input", "output")),
    Example("relu", "torch.nn.modules.activation.ReLU", 0, f"{MODULES}/activation.py", (NN,),
            echo=("input", "output")),
    Example("sigmoid", "torch.nn.modules.activation.Sigmoid", 0, f"{MODULES}/activation.py",
            (NN,), echo=("output",)),
    Example("tanh", "torch.nn.modules.activation.Tanh", 0, f"{MODULES}/activation.py", (NN,),
            echo=("output",)),
    Example("gelu", "torch.nn.modules.activation.GELU", 0, f"{MODULES}/activation.py", (NN,),
            echo=("output",)),
    Example("softmax", "torch.nn.modules.activation.Softmax", 0, f"{MODULES}/activation.py",
            (NN,), echo=("output",)),
    Example("mse_loss", "torch.nn.modules.loss.MSELoss", 0, f"{MODULES}/loss.py", (NN,),
            echo=("output", "input.grad")),
    Example("l1_loss", "torch.nn.modules.loss.L1Loss", 0, f"{MODULES}/loss.py", (NN,),
            echo=("output", "input.grad")),
    Example("bce_loss", "torch.nn.modules.loss.BCELoss", 0, f"{MODULES}/loss.py", (NN,),
            echo=("output", "input.grad")),
    Example("nll_loss", "torch.nn.modules.loss.NLLLoss", 0, f"{MODULES}/loss.py", (NN,),
            echo=("output", "input.grad")),
    Example("cross_entropy_loss", "torch.nn.modules.loss.CrossEntropyLoss", 0,
            f"{MODULES}/loss.py", (NN, RANDOM), echo=("output", "input.grad")),
    Example("functional_embedding", "torch.nn.functional.embedding", 0,
            "torch/nn/functional.py", (NN,)),
    Example("init_xavier_uniform", "torch.nn.init.xavier_uniform_", 0, "torch/nn/init.py",
            (NN, RANDOM), echo=("w",)),
    Example("init_normal", "torch.nn.init.normal_", 0, "torch/nn/init.py", (NN, RANDOM),
            echo=("w",)),
    # --- optimizers -----------------------------------------------------------------------------
    Example("sgd", "torch.optim.sgd.SGD", 0, "torch/optim/sgd.py", (OPTIM, NN),
            preamble=("model = nn.Linear(3, 2)", "input = torch.randn(4, 3)",
                      "target = torch.randn(4, 2)", "loss_fn = nn.MSELoss()"),
            echo=("model.weight", "model.bias")),
    # lr_scheduler's examples: torch's templates of a training loop; `train(...)` and
    # `validate(...)` are the names they leave undefined: one SGD step on a seeded model, and
    # the loss it then has
    *(Example(f"lr_scheduler_{name.lower()}", f"torch.optim.lr_scheduler.{name}", index,
              "torch/optim/lr_scheduler.py", (OPTIM, NN, RANDOM),
              imports=(f"from torch.optim.lr_scheduler import {', '.join(imported)}",),
              preamble=LR_SCHEDULER_PREAMBLE + extra, echo=LR_SCHEDULER_ECHO)
      for name, index, imported, extra in (
          ("StepLR", 0, ("StepLR",), ()), ("MultiStepLR", 0, ("MultiStepLR",), ()),
          ("ConstantLR", 0, ("ConstantLR",), ()), ("LinearLR", 0, ("LinearLR",), ()),
          ("ExponentialLR", 0, ("ExponentialLR",), ()),
          ("PolynomialLR", 0, ("PolynomialLR",), ()),
          ("CosineAnnealingLR", 0, ("CosineAnnealingLR",), ()),
          ("CosineAnnealingWarmRestarts", 0, ("CosineAnnealingWarmRestarts",), ()),
          ("MultiplicativeLR", 0, ("MultiplicativeLR",), ()),
          # its lr_lambda list has one function per parameter group: two groups, and `opt`
          ("LambdaLR", 0, ("LambdaLR",), LAMBDA_LR_GROUPS),
          ("ReduceLROnPlateau", 0, ("ReduceLROnPlateau",), ()),
          ("SequentialLR", 0, ("ConstantLR", "ExponentialLR", "SequentialLR"), ()),
          ("ChainedScheduler", 0, ("ChainedScheduler", "ConstantLR", "ExponentialLR"), ()))),
    # --- seeded randomness ------------------------------------------------------------------------
    Example("randn", "torch.randn", 0, TORCH_DOCS, (RANDOM,)),
    Example("rand", "torch.rand", 0, TORCH_DOCS, (RANDOM,)),
    Example("randint", "torch.randint", 0, TORCH_DOCS, (RANDOM,)),
    Example("randperm", "torch.randperm", 0, TORCH_DOCS, (RANDOM,)),
    Example("normal", "torch.normal", 0, TORCH_DOCS, (RANDOM,)),
    Example("normal_std", "torch.normal", 1, TORCH_DOCS, (RANDOM,)),
    Example("bernoulli", "torch.bernoulli", 0, TORCH_DOCS, (RANDOM,)),
    # --- tensor ops on seeded inputs ------------------------------------------------------------
    Example("matmul", "torch.matmul", 0, TORCH_DOCS, (TENSOR, RANDOM)),
    Example("mean_dim", "torch.mean", 1, TORCH_DOCS, (TENSOR, RANDOM)),
    Example("max_dim", "torch.max", 1, TORCH_DOCS, (TENSOR, RANDOM)),
    Example("cat", "torch.cat", 0, TORCH_DOCS, (TENSOR, RANDOM)),
    Example("einsum", "torch.functional.einsum", 0, "torch/functional.py", (TENSOR, RANDOM)),
    # --- custom autograd.Function ---------------------------------------------------------------
    Example("function_exp", "torch.autograd.function.Function", 0,
            "torch/autograd/function.py", (FUNCTION,),
            imports=("from torch.autograd import Function",),
            preamble=("input = torch.randn(3, requires_grad=True)",),
            echo=("output",)),
    Example("function_save_for_backward", "torch.autograd.function.FunctionCtx."
            "save_for_backward", 0, "torch/autograd/function.py", (FUNCTION,),
            imports=("from torch.autograd import Function",
                     "from torch.autograd.function import once_differentiable"),
            echo=("d",)),
    Example("function_set_materialize_grads", "torch.autograd.function.FunctionCtx."
            "set_materialize_grads", 0, "torch/autograd/function.py", (FUNCTION,),
            imports=("from torch.autograd import Function",
                     "from torch.autograd.function import once_differentiable"),
            echo=("b",)),
    # --- hooks ------------------------------------------------------------------------------------
    Example("tensor_register_hook", "torch.Tensor.register_hook", 0, "torch/_tensor.py",
            (HOOKS,)),
    # --- higher-order gradients -------------------------------------------------------------
    Example("vjp", "torch.autograd.functional.vjp", 0, "torch/autograd/functional.py",
            (HIGHER, RANDOM), imports=("from torch.autograd.functional import vjp",)),
    Example("jvp", "torch.autograd.functional.jvp", 0, "torch/autograd/functional.py",
            (HIGHER, RANDOM), imports=("from torch.autograd.functional import jvp",)),
    Example("jacobian", "torch.autograd.functional.jacobian", 0,
            "torch/autograd/functional.py", (HIGHER, RANDOM),
            imports=("from torch.autograd.functional import jacobian",)),
    Example("hessian", "torch.autograd.functional.hessian", 0,
            "torch/autograd/functional.py", (HIGHER, RANDOM),
            imports=("from torch.autograd.functional import hessian",)),
    Example("vhp", "torch.autograd.functional.vhp", 0, "torch/autograd/functional.py",
            (HIGHER, RANDOM), imports=("from torch.autograd.functional import vhp",)),
    Example("hvp", "torch.autograd.functional.hvp", 0, "torch/autograd/functional.py",
            (HIGHER, RANDOM), imports=("from torch.autograd.functional import hvp",)),
    # --- programs: ExportDB, the torch wheel's example programs (torch/_export/db/examples) ----
    # each file defines a module, draws its example inputs and instantiates it; the echo applies
    # it. The edit: the files' torch.export metadata is dropped (examples.without_export_metadata)
    exportdb("assume_constant_result"),
    exportdb("autograd_function"),
    exportdb("class_method"),
    exportdb("cond_branch_class_method"),
    exportdb("cond_branch_nested_function"),
    exportdb("cond_branch_nonlocal_variables"),
    exportdb("cond_closed_over_variable"),
    exportdb("cond_operands"),
    exportdb("cond_predicate"),
    exportdb("constrain_as_size_example"),
    exportdb("constrain_as_value_example"),
    exportdb("decorator"),
    exportdb("dictionary"),
    exportdb("dynamic_shape_assert"),
    exportdb("dynamic_shape_constructor"),
    exportdb("dynamic_shape_if_guard"),
    exportdb("dynamic_shape_map"),
    exportdb("dynamic_shape_round"),
    exportdb("dynamic_shape_slicing"),
    exportdb("dynamic_shape_view"),
    exportdb("fn_with_kwargs", echo=("model(*example_args, **example_kwargs)",)),
    exportdb("list_contains"),
    exportdb("list_unpack"),
    exportdb("model_attr_mutation"),
    exportdb("nested_function"),
    exportdb("null_context_manager"),
    exportdb("optional_input"),
    exportdb("pytree_flatten"),
    exportdb("scalar_output"),
    exportdb("specialized_attribute"),
    exportdb("static_for_loop"),
    exportdb("static_if"),
    exportdb("tensor_setattr"),
    exportdb("type_reflection_method"),
    exportdb("unsupported_operator"),
    exportdb("user_input_mutation"),
    # --- programs vendored from PyPI distributions (tests/corpus/pypi) ------------------------
    Example("micrograd_test_engine", "", 0, "micrograd-0.1.0/test/test_engine.py", (TENSOR,),
            kind="pypi", package="micrograd==0.1.0 sdist", package_licence="MIT",
            vendored="pypi/micrograd_test_engine.py",
            echo=('test_sanity_check() or "test_sanity_check passed"',
                  'test_more_ops() or "test_more_ops passed"')),
)
