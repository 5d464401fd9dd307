"""Custom derivative rules, in JAX's shape: `custom_vjp` (f.defvjp(fwd, bwd)) and
`custom_jvp` (f.defjvp(rule)).

The function's own body is traced as usual (so it compiles to C); each output then passes
through an ALIAS node whose value is that output and whose sources also include the inputs.
Differentiation stops at the alias and calls the user's rule instead, with graphc ops, so
the rule's nodes compile too and can be differentiated again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from . import pytree
from .autodiff import vjp_nodes, zeros
from .errors import GraphcError
from .ir import make_node, toposort
from .ops import ALIAS, defop
from .trace import Tracer, in_trace, new_input, to_tracer


class _Custom:
    """What custom_vjp and custom_jvp share: static arguments, the traced call, naming."""

    def __init__(self, fun: Callable, nondiff_argnums: Sequence[int], op):
        self.fun = fun
        self.nondiff_argnums = tuple(nondiff_argnums)
        self._op = op
        functools.update_wrapper(self, fun)

    def __call__(self, *args):
        if not in_trace(args):      # plain arrays: the rules only matter to a derivative
            return self.fun(*args)
        self._check_rules()
        static = tuple(args[i] for i in self.nondiff_argnums)
        dyn = tuple(a for i, a in enumerate(args) if i not in self.nondiff_argnums)
        out = self.fun(*args)
        in_leaves, in_td = pytree.flatten(dyn)
        ins = [to_tracer(x, f"{self.__name__} argument").node for x in in_leaves]
        out_leaves, out_td = pytree.flatten(out)
        outs = []
        for k, o in enumerate(out_leaves):
            o = to_tracer(o, f"{self.__name__} output")
            arg = (self, in_td, out_td, k, static)
            node = make_node(self._op, (o.node, *ins), o.shape, o.node.dtype, arg)
            outs.append(Tracer(node, weak=o.weak))
        return pytree.unflatten(out_td, outs)

    def _full_args(self, static: tuple, dyn: tuple) -> tuple:
        """The call's arguments in their original positions."""
        it_s, it_d = iter(static), iter(dyn)
        n = len(static) + len(dyn)
        return tuple(next(it_s) if i in self.nondiff_argnums else next(it_d) for i in range(n))

    def _check_rules(self) -> None:
        raise NotImplementedError

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other) -> bool:
        return self is other


def _unpack(srcs, arg):
    """(the custom function, static args, the dynamic args as trees of Tracers, out treedef,
    output index) from an alias node's sources and arg."""
    custom, in_td, out_td, k, static = arg
    dyn = pytree.unflatten(in_td, [Tracer(s.node) for s in srcs[1:]])
    return custom, static, dyn, out_td, k


def _cotangent_leaves(cts, dyn, name: str) -> list:
    """The rule's cotangents (one per dynamic argument) as leaves, None where an argument is
    not a float or the rule gave None."""
    if not isinstance(cts, (tuple, list)) or len(cts) != len(dyn):
        raise GraphcError(f"{name}: the bwd rule must return a tuple with one cotangent per "
                          f"differentiable argument ({len(dyn)}), got {type(cts).__name__}")
    out = []
    for ct, arg in zip(cts, dyn):
        arg_leaves, arg_td = pytree.flatten(arg)
        if ct is None:
            out += [None] * len(arg_leaves)
            continue
        ct_leaves, ct_td = pytree.flatten(ct)
        if ct_td != arg_td:
            raise GraphcError(f"{name}: a cotangent has structure {pytree.describe(ct_td)}, "
                              f"its argument {pytree.describe(arg_td)}")
        for c, a in zip(ct_leaves, arg_leaves):
            if c is None or not a.node.dtype.is_float:
                out.append(None)
                continue
            c = to_tracer(c, f"{name} cotangent")
            if c.shape != a.shape:
                raise GraphcError(f"{name}: a cotangent of shape {c.shape} for an argument "
                                  f"of shape {a.shape}")
            out.append(c.astype(a.dtype))
    return out


# ---- custom_vjp ----

def _custom_vjp_rule(g, y, *srcs, arg):
    custom, static, dyn, out_td, k = _unpack(srcs, arg)
    full = custom._full_args(static, dyn)
    fwd_out = custom.fwd(*full)
    if not isinstance(fwd_out, tuple) or len(fwd_out) != 2:
        raise GraphcError(f"{custom.__name__}: fwd must return (output, residuals)")
    out, res = fwd_out
    out_leaves = pytree.flatten(out)[0]
    ct_leaves = [g if j == k else zeros(to_tracer(o).shape, to_tracer(o).node.dtype)
                 for j, o in enumerate(out_leaves)]
    cts = custom.bwd(*static, res, pytree.unflatten(out_td, ct_leaves))
    return (None, *_cotangent_leaves(cts, dyn, custom.__name__))


CUSTOM_VJP = defop("custom_vjp", ALIAS, numpy=lambda out, *ins, arg: out, c="{0}",
                   vjp=_custom_vjp_rule, has_arg=True)


class custom_vjp(_Custom):  # noqa: N801  (the name JAX users know)
    """A function with its own reverse-mode rule:

        @graphc.custom_vjp
        def f(x): ...
        def f_fwd(x): return f(x), residuals
        def f_bwd(residuals, g): return (cotangent_of_x,)
        f.defvjp(f_fwd, f_bwd)

    `bwd` gets the nondiff arguments first (as JAX), and must be linear in `g`."""

    def __init__(self, fun: Callable, nondiff_argnums: Sequence[int] = ()):
        super().__init__(fun, nondiff_argnums, CUSTOM_VJP)
        self.fwd = self.bwd = None

    def defvjp(self, fwd: Callable, bwd: Callable) -> custom_vjp:
        self.fwd, self.bwd = fwd, bwd
        return self

    def _check_rules(self) -> None:
        if self.fwd is None:
            raise GraphcError(f"custom_vjp {self.__name__}: call defvjp(fwd, bwd) first")


# ---- custom_jvp ----

def _custom_jvp_rule(ts, y, *srcs, arg):
    custom, static, dyn, out_td, k = _unpack(srcs, arg)
    leaves, in_td = pytree.flatten(dyn)
    tangents = [t if t is not None else zeros(x.shape, x.node.dtype)
                for t, x in zip(ts[1:], leaves)]
    return _tangent_out(custom, static, dyn, tangents, in_td, k)


def _tangent_out(custom, static, dyn, tangents, in_td, k) -> Tracer:
    """Tangent of output k from the user's rule, called as rule(*static, primals, tangents)."""
    primals = tuple(dyn)
    tans = tuple(pytree.unflatten(in_td, tangents))
    out = custom.jvp_rule(*static, primals, tans)
    if not isinstance(out, tuple) or len(out) != 2:
        raise GraphcError(f"{custom.__name__}: the jvp rule must return (output, tangent)")
    t_leaves = pytree.flatten(out[1])[0]
    return to_tracer(t_leaves[k], f"{custom.__name__} tangent")


def _custom_jvp_vjp(g, y, *srcs, arg):
    """Jᵀg from the JVP rule: J·t is linear in t, so its VJP at any t gives Jᵀg."""
    custom, static, dyn, out_td, k = _unpack(srcs, arg)
    leaves, in_td = pytree.flatten(dyn)
    phs = [new_input(x.shape, x.node.dtype, "tangent") for x in leaves]
    tout = _tangent_out(custom, static, dyn, [Tracer(p) for p in phs], in_td, k)
    float_phs = [p for p in phs if p.dtype.is_float]
    cts = iter(vjp_nodes([tout.node], [g.astype(tout.dtype)], float_phs))
    out = [next(cts) if p.dtype.is_float else None for p in phs]
    placeholders = {id(p) for p in phs}
    for c in out:
        if c is not None and any(id(n) in placeholders for n in toposort([c.node])):
            raise GraphcError(f"custom_jvp {custom.__name__}: the jvp rule must be linear in "
                              "the tangents for reverse mode to transpose it")
    return (None, *out)


CUSTOM_JVP = defop("custom_jvp", ALIAS, numpy=lambda out, *ins, arg: out, c="{0}",
                   vjp=_custom_jvp_vjp, jvp=_custom_jvp_rule, has_arg=True)


class custom_jvp(_Custom):  # noqa: N801  (the name JAX users know)
    """A function with its own forward-mode rule:

        @graphc.custom_jvp
        def f(x): ...
        @f.defjvp
        def f_jvp(primals, tangents): return f(*primals), tangent_out

    Reverse mode transposes the rule, which must therefore be linear in the tangents."""

    def __init__(self, fun: Callable, nondiff_argnums: Sequence[int] = ()):
        super().__init__(fun, nondiff_argnums, CUSTOM_JVP)
        self.jvp_rule = None

    def defjvp(self, rule: Callable) -> Callable:
        self.jvp_rule = rule
        return rule

    def _check_rules(self) -> None:
        if self.jvp_rule is None:
            raise GraphcError(f"custom_jvp {self.__name__}: call defjvp(rule) first")

