"""graphc: trace numerical Python functions into static graphs, differentiate them, and run
them as generated C."""

from __future__ import annotations

from . import distributed, nn, optim
from ._version import __version__
from .check import check_grads
from .custom import custom_jvp, custom_vjp
from .diagnose import grad_report
from .eager import eager as _eager
from .errors import CompileError, DTypeError, GraphcError, NaNError, ShapeError, TracerError
from .ir import Graph
from .nans import debug_nans
from .ops import api as _api
from .pytree import flatten as tree_flatten
from .pytree import register_dataclass, tree_leaves, tree_map, tree_structure
from .pytree import unflatten as tree_unflatten
from .runtime import CompiledFunction, compile, jit
from .show import show
from .trace import Tracer, trace
from .train import train_step
from .transforms import grad, hessian, jacobian, jvp, value_and_grad, vjp

# Every public op, wrapped so that on plain arrays outside a trace it returns numpy arrays.
for _name in _api.__all__:
    globals()[_name] = _eager(getattr(_api, _name))
del _name

__all__ = [
    "__version__", "CompileError", "CompiledFunction", "DTypeError", "Graph", "GraphcError",
    "NaNError", "ShapeError", "Tracer", "TracerError", "check_grads", "compile", "custom_jvp",
    "custom_vjp", "debug_nans", "distributed", "grad", "grad_report", "hessian", "jacobian",
    "jit", "jvp", "nn", "optim", "register_dataclass", "show", "trace", "tree_flatten",
    "tree_leaves", "tree_map", "train_step", "tree_structure", "tree_unflatten",
    "value_and_grad", "vjp", *_api.__all__,
]
