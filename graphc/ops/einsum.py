"""einsum, lowered to the primitives: sums over letters one operand alone has, then a
(batched) matmul per pair of operands, then a transpose to the output's order.

Supports explicit (`"ij,jk->ik"`) and implicit (`"ij,jk"`) output, any number of operands
(contracted left to right), and `...` for leading broadcast dimensions. A letter repeated
within one operand (a diagonal, `"ii"`) is refused.
"""

from __future__ import annotations

from ..errors import GraphcError, ShapeError
from ..trace import ArrayLike, Tracer
from .elementwise import multiply
from .linalg import matmul
from .movement import broadcast_to, prepare_same_dtype, reshape, transpose
from .reduce import sum as reduce_sum


def einsum(subscripts: str, *operands: ArrayLike) -> Tracer:
    """numpy.einsum for sums of products (no diagonals): `einsum("bij,bjk->bik", a, b)`."""
    if not isinstance(subscripts, str):
        raise GraphcError("einsum: the first argument must be the subscripts string")
    if not operands:
        raise GraphcError("einsum: needs at least one operand")
    ts, _ = prepare_same_dtype(operands)
    ins, out = _parse(subscripts.replace(" ", ""), ts)
    sizes: dict[str, int] = {}
    for labels, t in zip(ins, ts):
        for c, d in zip(labels, t.shape):
            if sizes.setdefault(c, d) != d and d != 1 and sizes[c] != 1:
                raise ShapeError(f"einsum: letter {c!r} has sizes {sizes[c]} and {d}")
            sizes[c] = max(sizes[c], d)
    terms = list(zip(ins, ts))
    acc_labels, acc = _sum_private(*terms[0], terms[1:], out)
    for k, (labels, t) in enumerate(terms[1:], start=1):
        labels, t = _sum_private(labels, t, terms[k + 1:] + [(acc_labels, acc)], out)
        acc_labels, acc = _contract(acc_labels, acc, labels, t, terms[k + 1:], out, sizes)
    if sorted(acc_labels) != sorted(out):
        raise GraphcError(f"einsum: internal: {acc_labels} vs {out}")
    result = transpose(acc, tuple(acc_labels.index(c) for c in out)) if acc_labels != out \
        else acc
    return broadcast_to(result, tuple(sizes[c] for c in out))


def _parse(subscripts: str, ts: list[Tracer]) -> tuple[list[list[str]], list[str]]:
    lhs, arrow, rhs = subscripts.partition("->")
    specs = lhs.split(",")
    if len(specs) != len(ts):
        raise GraphcError(f"einsum: {len(specs)} operand subscripts for {len(ts)} operands")
    ins = [_labels(s, t.ndim, subscripts) for s, t in zip(specs, ts)]
    for labels in ins:
        if len(set(labels)) != len(labels):
            raise GraphcError(f"einsum {subscripts!r}: a repeated letter within one operand "
                              "(a diagonal) is not supported")
    if arrow:
        out = _labels(rhs, None, subscripts, max(
            (sum(1 for c in labels if c.startswith("_")) for labels in ins), default=0))
        seen = {c for labels in ins for c in labels}
        if set(out) - seen or len(set(out)) != len(out):
            raise GraphcError(f"einsum {subscripts!r}: bad output subscripts")
    else:       # implicit: the letters used once, in alphabetical order, after `...`
        counts: dict[str, int] = {}
        for labels in ins:
            for c in labels:
                counts[c] = counts.get(c, 0) + 1
        dots = sorted((c for c in counts if c.startswith("_")), key=lambda c: -int(c[1:]))
        out = dots + sorted(c for c, n in counts.items() if n == 1 and not c.startswith("_"))
    return ins, out


def _labels(spec: str, ndim: int | None, subscripts: str, n_dots: int = 0) -> list[str]:
    """Letters of one operand; `...` covers dims named _k, k counted from the right (so
    operands with fewer such dims line up on the right, as numpy broadcasts)."""
    if spec.count("...") > 1 or (spec.replace("...", "") and
                                 not spec.replace("...", "").isalpha()):
        raise GraphcError(f"einsum: bad subscripts {subscripts!r}")
    head, dots, tail = spec.partition("...")
    if dots:
        n = (ndim - len(head) - len(tail)) if ndim is not None else n_dots
        if n < 0:
            raise ShapeError(f"einsum {subscripts!r}: too many letters for an operand")
        return list(head) + [f"_{n - 1 - k}" for k in range(n)] + list(tail)
    if ndim is not None and len(spec) != ndim:
        raise ShapeError(f"einsum {subscripts!r}: {spec!r} names {len(spec)} dims of an "
                         f"operand with {ndim}")
    return list(spec)


def _needed(rest, out) -> set[str]:
    return set(out) | {c for labels, _ in rest for c in labels}


def _sum_private(labels, t, rest, out):
    """Sum out the letters no other operand and not the output has."""
    private = [k for k, c in enumerate(labels) if c not in _needed(rest, out)]
    if not private:
        return labels, t
    return [c for c in labels if c not in {labels[k] for k in private}], \
        reduce_sum(t, axis=tuple(private))


def _contract(la, a, lb, b, rest, out, sizes):
    """a and b as one operand: shared letters still needed are batch dims, shared letters
    not needed are summed by a matmul."""
    needed = _needed(rest, out)
    batch = [c for c in la if c in lb and c in needed]
    summed = [c for c in la if c in lb and c not in needed]
    free_a = [c for c in la if c not in lb]
    free_b = [c for c in lb if c not in la]
    if not summed:                  # an outer product: broadcast and multiply
        labels = batch + free_a + free_b
        return labels, multiply(_arrange(la, a, labels, sizes), _arrange(lb, b, labels, sizes))
    m = _size(free_a, sizes)
    n = _size(free_b, sizes)
    k = _size(summed, sizes)
    bshape = tuple(sizes[c] for c in batch)
    a2 = reshape(_arrange(la, a, batch + free_a + summed, sizes), bshape + (m, k))
    b2 = reshape(_arrange(lb, b, batch + summed + free_b, sizes), bshape + (k, n))
    labels = batch + free_a + free_b
    return labels, reshape(matmul(a2, b2), tuple(sizes[c] for c in labels))


def _arrange(labels, t, order, sizes):
    """t with its letters in `order` (letters it lacks as broadcast dims of size 1), then
    broadcast to full size."""
    t = transpose(t, tuple(labels.index(c) for c in order if c in labels))
    present = [c for c in order if c in labels]
    t = reshape(t, tuple(t.shape[present.index(c)] if c in labels else 1 for c in order))
    return broadcast_to(t, tuple(sizes[c] for c in order))


def _size(letters, sizes) -> int:
    n = 1
    for c in letters:
        n *= sizes[c]
    return n
