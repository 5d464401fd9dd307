"""Function transformations. Each one is symbolic: called on traced values it adds nodes to
the current trace; called on concrete arrays it compiles itself (cached per signature) and runs.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable

import numpy as np

from . import dtypes, nans, pytree, sanitize
from .autodiff import jvp_nodes, substitute, vjp_nodes, zeros
from .capture import call_traced, function_name, keywords_last, trace_to_graph
from .errors import DTypeError, GraphcError
from .ir import adopt, build_location, keep_whole
from .ops import whole
from .runtime import CompiledFunction
from .trace import Tracer, constant, in_trace, new_input, to_tracer

# ---- the symbolic / concrete switch shared by all transformations ----

class _Transformed:
    """A transformation's result: symbolic inside a trace, compiled when called on arrays.

    `symbolic(args, kwargs, fresh)`: keyword arguments pass through to the function (never
    differentiated: argnums count positional arguments, as in JAX); fresh=True promises that
    the traced arguments are inputs nothing else has seen (the compiled top-level call), so
    they can serve directly as the differentiation variables without placeholders and a
    substitution pass."""

    def __init__(self, symbolic: Callable, name: str):
        self._symbolic = symbolic
        self.__name__ = self.__qualname__ = name

    def __call__(self, *args, **kwargs):
        if in_trace((args, kwargs)):
            return self._symbolic(args, kwargs, False)
        return run_now(self, *args, **kwargs)

    def fresh_entry(self) -> Callable:
        """What compile() traces: called once, directly on brand-new input tracers."""
        return lambda *args: self._symbolic(args, {}, True)

    def with_keywords(self, n_pos: int, names: tuple[str, ...]) -> _Transformed:
        """This transformation taking the keyword arguments `names` as trailing positional
        ones (compile's variant for a call with keywords: runtime.py), reverse tape and all."""
        def symbolic(args, kwargs, fresh):
            return self._symbolic(args[:n_pos], dict(zip(names, args[n_pos:])) | kwargs, fresh)
        out = _Transformed(symbolic, self.__name__)
        out.keyword_names = names
        tape = getattr(self, "reverse_tape", None)
        if tape is not None:
            out.reverse_tape = functools.partial(tape, keywords=names)
        return out


def _placeholders(tree, label: str, need_float: bool, fresh: bool = False):
    """Input nodes standing for the leaves of `tree` (and the values they replace): new
    ones, unless the leaves are fresh inputs already."""
    leaves, td = pytree.flatten(tree)
    actual = [to_tracer(x, label) for x in leaves]
    if need_float:
        for t in actual:
            if not t.node.dtype.is_float:
                raise GraphcError(f"{label}: differentiation needs float inputs, got "
                                  f"{t.node.dtype} (cast it, or leave it out of argnums)")
    if fresh and all(t.node.op.name == "input" for t in actual):
        return actual, actual, td
    ph = [Tracer(new_input(t.shape, t.node.dtype, label), weak=t.weak) for t in actual]
    return ph, actual, td


def _bind_back(nodes: list, phs: list[Tracer], actual: list[Tracer]) -> list:
    """Replace placeholders by the values they stood for (None entries pass through)."""
    if all(p is a for p, a in zip(phs, actual)):
        return list(nodes)
    mapping = {id(p.node): a.node for p, a in zip(phs, actual)}
    real = [n for n in nodes if n is not None]
    done = iter(substitute([t.node for t in real], mapping))
    return [None if n is None else Tracer(next(done), weak=n.weak) for n in nodes]


def _argnums(argnums, nargs: int, name: str, keywords=()) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    if isinstance(argnums, str) or not all(isinstance(a, int) for a in nums):
        raise GraphcError(f"{name}: argnums must be an int or a tuple of ints, got {argnums!r}")
    for a in nums:
        if not -nargs <= a < nargs:
            hint = (f" (keyword arguments, here {', '.join(keywords)}, are passed through, "
                    "not differentiated: pass the argument positionally)" if keywords else "")
            raise GraphcError(f"{name}: argnums {argnums!r} is out of range for a function "
                              f"called with {nargs} positional argument(s){hint}")
    positions = tuple(a % nargs for a in nums)
    if len(set(positions)) != len(positions):
        raise GraphcError(f"{name}: argnums {argnums!r} names an argument twice; list each "
                          "argument once")
    return positions


def _differentiated_args(args, kwargs, argnums, fresh: bool, name: str):
    """args with each argument in argnums replaced by placeholders; and per such argument
    (placeholders, the values they stand for, its treedef)."""
    args = list(args)
    groups = []
    for i in _argnums(argnums, len(args), name, tuple(kwargs)):
        ph, actual, td = _placeholders(args[i], f"argument {i}", need_float=True, fresh=fresh)
        args[i] = pytree.unflatten(td, ph)
        groups.append((ph, actual, td))
    return tuple(args), groups


def _zero_fill(cts: list, phs: list[Tracer]) -> list[Tracer]:
    """The cotangents, zeros where None; a weakly typed primal's (a Python scalar's) is weak
    too, as in JAX: it comes back as a Python float and stays weak when passed back in."""
    cts = [c if c is not None else zeros(p.shape, p.node.dtype) for c, p in zip(cts, phs)]
    return [Tracer(c.node, weak=True) if p.weak and not c.weak else c for c, p in zip(cts, phs)]


# ---- reverse mode ----

def _value_and_grad_symbolic(fn, argnums, has_aux, args, kwargs, fresh):
    args, groups = _differentiated_args(args, kwargs, argnums, fresh, "grad")
    out = _declined_trace(fn, args + tuple(kwargs.values())) if fresh else None
    if out is None:
        out = call_traced(fn, args, kwargs)
    value, aux = out if has_aux else (out, None)
    value = to_tracer(value, "grad output")
    if value.shape != () or not value.node.dtype.is_float:
        raise GraphcError(f"grad of {getattr(fn, '__name__', fn)}: the function must return a "
                          f"float scalar, got {value.node.dtype} of shape {value.shape} "
                          "(use jacobian or vjp for non-scalar outputs)")
    all_ph = [p for ph, _, _ in groups for p in ph]
    all_actual = [a for _, actual, _ in groups for a in actual]
    one = Tracer(constant(1, value.node.dtype))
    cts = _zero_fill(vjp_nodes([value.node], [one], [p.node for p in all_ph]), all_ph)
    aux_leaves, aux_td = pytree.flatten(aux)
    aux_t = [to_tracer(a, "aux") for a in aux_leaves]
    bound = _bind_back([value] + aux_t + cts, all_ph, all_actual)
    value, aux_b, cts = bound[0], bound[1:1 + len(aux_t)], iter(bound[1 + len(aux_t):])
    grads = [pytree.unflatten(td, [next(cts) for _ in ph]) for ph, _, td in groups]
    grads = grads[0] if isinstance(argnums, int) else tuple(grads)
    if has_aux:
        return (value, pytree.unflatten(aux_td, aux_b)), grads
    return value, grads


def value_and_grad(fn: Callable, argnums=0, has_aux: bool = False) -> Callable:
    """(value, gradient) of a scalar-valued fn; with has_aux fn returns (value, aux)."""
    def symbolic(args, kwargs, fresh):
        return _value_and_grad_symbolic(fn, argnums, has_aux, args, kwargs, fresh)
    out = _Transformed(symbolic, f"value_and_grad({function_name(fn)})")
    if not has_aux:
        out.reverse_tape = functools.partial(_reverse_tape, fn, argnums, True)
    return _named(fn, out)


def grad(fn: Callable, argnums=0, has_aux: bool = False) -> Callable:
    """Gradient of a scalar-valued fn w.r.t. argument(s) argnums, shaped like them."""
    def symbolic(args, kwargs, fresh):
        (value_aux, g) = _value_and_grad_symbolic(fn, argnums, has_aux, args, kwargs, fresh)
        return (g, value_aux[1]) if has_aux else g
    out = _Transformed(symbolic, f"grad({function_name(fn)})")
    if not has_aux:
        out.reverse_tape = functools.partial(_reverse_tape, fn, argnums, False)
    return _named(fn, out)


# The forward trace of a large graph the reverse tape declined (fn, its graph), kept for the
# symbolic trace the runtime starts next on this thread, so fn is traced once either way
# (its nodes keep the tape trace's source line: fn's first line, for explain and source).
_declined = threading.local()


def _declined_trace(fn, args: tuple):
    """fn's output at these fresh input tracers, rebuilt from the declined trace of fn (its
    inputs replaced by these), or None if there is none for fn and inputs of this kind."""
    fn_then, graph = getattr(_declined, "trace", None) or (None, None)
    _declined.trace = None
    inputs = [t for t in pytree.flatten(args)[0] if isinstance(t, Tracer)]
    if fn_then is not fn or len(inputs) != len(graph.inputs) or any(
            (t.shape, t.node.dtype) != (n.shape, n.dtype) for t, n in zip(inputs, graph.inputs)):
        return None
    for n in graph.nodes:           # its constants join this trace's (CSE with autodiff's)
        if n.op.name == "const":
            adopt(n)
    (out,) = whole.expand(graph.outputs, {id(n): t.node for n, t in zip(graph.inputs, inputs)})
    return Tracer(out)


def reverse_tape_min_nodes() -> int:
    """Forward graphs of at least this many nodes (primitives: a whole softmax counts as
    the 13 it stands for) are differentiated at run time by the reverse tape when they can
    be (GRAPHC_REVERSE_TAPE_MIN_NODES)."""
    value = os.environ.get("GRAPHC_REVERSE_TAPE_MIN_NODES", "2000")
    try:
        return int(value)
    except ValueError:
        raise GraphcError(f"GRAPHC_REVERSE_TAPE_MIN_NODES={value!r}: expected an integer") \
            from None


def _reverse_tape(fn, argnums, with_value: bool, args: tuple, specs: list, treedef,
                  keywords: tuple[str, ...] = ()):
    """The Executable of value_and_grad (or grad) of fn at args as a reverse tape
    (codegen/scalar_tape.py), or None where the usual path applies: arguments that are not
    float64 scalars or vectors, a small graph, an op without a tape case, a function that
    is itself a transformation (higher-order derivatives). The last len(keywords) args are
    the values of those keyword arguments."""
    from .codegen.scalar_tape import NotTapeable, encode
    from .reverse_tape import ReverseTapeRunner
    from .runtime import Executable
    if isinstance(fn, _Transformed) or nans.enabled() or sanitize.enabled() or any(
            s[0] == "static" or s[1] is not dtypes.float64 or len(s[0]) > 1 for s in specs):
        return None
    n_pos = len(args) - len(keywords)
    positions = _argnums(argnums, n_pos, "grad", keywords)
    # nodes are attributed to fn's first line: finding each one's own line (a walk up the
    # stack per node) was a third of the tracing time, and the tape reports no lines
    code = getattr(fn, "__code__", None)
    previous = build_location(None if code is None else (code.co_filename, code.co_firstlineno))
    was_whole = keep_whole(True)        # softmax, x[i], stack of scalars: one node each
    try:
        graph, out_td = trace_to_graph(keywords_last(fn, n_pos, keywords), args)
    finally:
        build_location(previous)
        keep_whole(was_whole)
    least = reverse_tape_min_nodes()   # whole ops count as their primitives, so never fewer
    if out_td.num_leaves != 1 or graph.weak_outputs or (
            len(graph.nodes) < least and whole.primitive_count(graph.nodes) < least):
        return None         # traced again (cheap: a small graph), each node to its own line
    trees = [pytree.flatten(a)[1] for a in args]
    starts = np.cumsum([0] + [td.num_leaves for td in trees])
    wrt = [k for i in positions for k in range(starts[i], starts[i + 1])]
    try:
        tape = encode(graph, wrt)
    except NotTapeable:
        _declined.trace = (fn, graph)      # a large graph: the symbolic path reuses it
        return None
    runner = ReverseTapeRunner(tape, [n.shape for n in graph.inputs],
                               [graph.inputs[k].shape for k in wrt], with_value)
    grads = [pytree.unflatten(trees[i], [0.0] * trees[i].num_leaves) for i in positions]
    grads = grads[0] if isinstance(argnums, int) else tuple(grads)
    _, out_td = pytree.flatten((0.0, grads) if with_value else grads)
    # the gradient of a Python float is a Python float, as on the symbolic path
    weak = tuple(j + with_value for j, k in enumerate(wrt) if specs[k][2:] == ("weak",))
    return Executable(graph, out_td, runner, specs, weak, treedef)


def _named(fn, wrapper):
    """Copy fn's name and docstring (never its __dict__, which may be another wrapper's)."""
    return functools.update_wrapper(wrapper, fn, updated=())


def vjp(fn: Callable, *primals):
    """(fn(*primals), vjp_fn) where vjp_fn(cotangent) gives one cotangent per primal."""
    if not in_trace(primals):
        return _vjp_now(fn, primals)
    phs, actual, tds = [], [], []
    for k, p in enumerate(primals):
        ph, act, td = _placeholders(p, f"primal {k}", need_float=False)
        phs.append(ph)
        actual.append(act)
        tds.append(td)
    out = call_traced(fn, tuple(pytree.unflatten(td, ph) for td, ph in zip(tds, phs)))
    out_leaves, out_td = pytree.flatten(out)
    out_t = [to_tracer(o, "vjp output") for o in out_leaves]
    flat_ph = [p for ph in phs for p in ph]
    flat_actual = [a for act in actual for a in act]
    out_bound = pytree.unflatten(out_td, _bind_back(out_t, flat_ph, flat_actual))

    def vjp_fn(cotangent):
        ct_leaves = _cotangent_leaves(cotangent, out_td)
        cts = []
        for o, c in zip(out_t, ct_leaves):
            c = to_tracer(c, "cotangent").astype(o.dtype)
            if c.shape != o.shape:
                raise GraphcError(f"vjp: cotangent shape {c.shape} != output shape {o.shape}")
            cts.append(c)
        # a primal the output ignores, or an int one (no float0), gets zeros of its dtype
        res = _zero_fill(vjp_nodes([o.node for o in out_t], cts, [p.node for p in flat_ph]),
                         flat_ph)
        bound = iter(_bind_back(res, flat_ph, flat_actual))
        return tuple(pytree.unflatten(td, [next(bound) for _ in ph]) for td, ph in zip(tds, phs))

    return out_bound, vjp_fn


def _cotangent_leaves(cotangent, out_td) -> list:
    """The cotangent's leaves, once its structure is checked against the output's."""
    ct_leaves, ct_td = pytree.flatten(cotangent)
    if ct_td != out_td:
        raise GraphcError(f"vjp: the cotangent has structure {pytree.describe(ct_td)}, "
                          f"the output {pytree.describe(out_td)}")
    return ct_leaves


# ---- forward mode ----

def jvp(fn: Callable, primals, tangents):
    """(fn(*primals), J·tangents): forward mode."""
    primals, tangents = tuple(primals), tuple(tangents)
    if not in_trace((primals, tangents)):
        return run_now(lambda p, t: jvp(fn, p, t), primals, tangents)
    if len(primals) != len(tangents):
        raise GraphcError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    ph, actual, td = _placeholders(primals, "primal", need_float=False)
    t_leaves, t_td = pytree.flatten(tangents)
    if t_td != td:
        raise GraphcError(f"jvp: tangents have structure {pytree.describe(t_td)}, primals "
                          f"{pytree.describe(td)}")
    tans = []
    for p, t in zip(ph, t_leaves):
        t = to_tracer(t, "tangent")
        if t.shape != p.shape:
            raise GraphcError(f"jvp: tangent shape {t.shape} != primal shape {p.shape}")
        if not p.node.dtype.is_float:
            if t.node.dtype.is_float:
                raise DTypeError(f"jvp: a {t.node.dtype} tangent for a {p.node.dtype} primal: "
                                 "integer inputs have no tangents (pass zeros of their dtype)")
            tans.append(None)
            continue
        if not t.weak and t.node.dtype is not p.node.dtype:
            raise DTypeError(f"jvp: tangent dtype {t.node.dtype} != primal dtype "
                             f"{p.node.dtype}")
        tans.append(t.astype(p.dtype))
    out = call_traced(fn, pytree.unflatten(td, ph))
    out_leaves, out_td = pytree.flatten(out)
    out_t = [to_tracer(o, "jvp output") for o in out_leaves]
    tout = jvp_nodes([o.node for o in out_t], [p.node for p in ph], tans)
    tout = [t if t is not None else zeros(o.shape, o.node.dtype) for t, o in zip(tout, out_t)]
    bound = _bind_back(out_t + tout, ph, actual)
    n = len(out_t)
    return pytree.unflatten(out_td, bound[:n]), pytree.unflatten(out_td, bound[n:])


# ---- Jacobians ----

def _jacobian_symbolic(fn, argnums, args, kwargs, fresh):
    args, groups = _differentiated_args(args, kwargs, argnums, fresh, "jacobian")
    out = call_traced(fn, args, kwargs)
    out_leaves, out_td = pytree.flatten(out)
    outs = [to_tracer(o, "jacobian output") for o in out_leaves]
    ins = [p for ph, _, _ in groups for p in ph]
    rows = _jacobian_blocks(outs, ins)        # rows[o][i]: shape outs[o].shape + ins[i].shape
    flat_actual = [a for _, actual, _ in groups for a in actual]
    flat = _bind_back([b for row in rows for b in row], ins, flat_actual)
    it = iter(flat)
    per_out = []
    for _ in outs:
        blocks = iter([next(it) for _ in ins])
        per_arg = [pytree.unflatten(td, [next(blocks) for _ in ph]) for ph, _, td in groups]
        per_out.append(per_arg[0] if isinstance(argnums, int) else tuple(per_arg))
    return pytree.unflatten(out_td, per_out)


def _jacobian_blocks(outs: list[Tracer], ins: list[Tracer]) -> list[list[Tracer]]:
    n_out = sum(o.size for o in outs)
    n_in = sum(i.size for i in ins)
    in_nodes = [i.node for i in ins]
    rows: list[list[Tracer]] = []
    if n_out <= n_in:       # reverse mode: one sweep per output element
        for o in outs:
            sweeps = [vjp_nodes([o.node], [_basis(o, e)], in_nodes) for e in range(o.size)]
            rows.append([_assemble(sweeps, k, o, i, "rev") for k, i in enumerate(ins)])
    else:                   # forward mode: one sweep per input element
        per_in = []
        for k, i in enumerate(ins):
            sweeps = []
            for e in range(i.size):
                tans = [_basis(i, e) if j == k else None for j in range(len(ins))]
                sweeps.append(jvp_nodes([o.node for o in outs], in_nodes, tans))
            per_in.append(sweeps)
        for oi, o in enumerate(outs):
            rows.append([_assemble([s[oi:oi + 1] for s in per_in[k]], 0, o, i, "fwd")
                         for k, i in enumerate(ins)])
    return rows


def _basis(t: Tracer, e: int) -> Tracer:
    v = np.zeros(t.size, t.dtype)
    v[e] = 1
    return Tracer(constant(v.reshape(t.shape), t.node.dtype))


def _assemble(sweeps, k, o: Tracer, i: Tracer, mode: str) -> Tracer:
    """Stack per-element sweep results into a block of shape o.shape + i.shape."""
    from .ops.api import astype, reshape, stack
    like = i if mode == "rev" else o
    dt = dtypes.promote(o.node.dtype, i.node.dtype)
    parts = [s[k] if s[k] is not None else zeros(like.shape, like.node.dtype) for s in sweeps]
    if not parts:
        return zeros(o.shape + i.shape, dt)
    flat = [reshape(astype(p, dt), (-1,)) for p in parts]
    block = stack(flat, axis=0 if mode == "rev" else 1)
    return reshape(block, o.shape + i.shape)


def jacobian(fn: Callable, argnums=0) -> Callable:
    """Full Jacobian, shaped out.shape + in.shape (reverse or forward mode, whichever is
    fewer sweeps)."""
    def symbolic(args, kwargs, fresh):
        return _jacobian_symbolic(fn, argnums, args, kwargs, fresh)
    return _named(fn, _Transformed(symbolic, f"jacobian({function_name(fn)})"))


def hessian(fn: Callable, argnums=0) -> Callable:
    """Hessian of a scalar fn, shaped in.shape + in.shape: the Jacobian of the gradient."""
    return jacobian(grad(fn, argnums), argnums)


# ---- the concrete paths: trace now, run compiled ----

def run_now(fn: Callable, *args, **kwargs):
    """fn(*args, **kwargs) compiled, traced at this call so it sees today's globals and
    closures (never a trace cached on the function object); the built code is reused while
    the graph is equal."""
    return CompiledFunction(fn, retrace=True)(*args, **kwargs)


def _vjp_now(fn: Callable, primals: tuple):
    """Concrete vjp: both graphs are traced now, so vjp_fn uses the values of this moment
    (as JAX's linearization), not those of whenever it is called."""
    leaves, td = pytree.flatten(primals)       # the values now: later in-place changes
    primals = pytree.unflatten(td, [np.array(x, copy=True) if isinstance(x, np.ndarray)
                                    else x for x in leaves])      # do not leak in
    out = run_now(fn, *primals)
    out_leaves, out_td = pytree.flatten(out)
    like = [np.zeros(np.shape(o), np.asarray(o).dtype) for o in out_leaves]
    backward = CompiledFunction(lambda p, ct: vjp(fn, *p)[1](ct))
    backward.executable(primals, pytree.unflatten(out_td, like))     # traced here, now

    def vjp_fn(cotangent):
        if in_trace(cotangent):           # called inside a trace: the primals are constants
            return vjp(fn, *primals)[1](cotangent)
        ct_leaves = _cotangent_leaves(cotangent, out_td)
        cts = []
        for c, o in zip(ct_leaves, like):
            if np.shape(c) != o.shape:
                raise GraphcError(f"vjp: cotangent shape {np.shape(c)} != output shape "
                                  f"{o.shape}")
            cts.append(np.asarray(c, dtype=o.dtype))     # the signature traced above
        return backward(primals, pytree.unflatten(out_td, cts))

    return out, vjp_fn
