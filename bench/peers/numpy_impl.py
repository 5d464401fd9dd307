"""Hand-written numpy (forward and backward derived by hand), the reference."""

from __future__ import annotations

from bench import problems as P


def _w0():
    return lambda: P.w0_numpy(*P.W0_ARGS)


def _w1():
    return P.NumpySGD(P.w1_loss_grad, P.init_mlp(P.W1_SIZES, 0, "float64"), P.moons(), P.W1_LR)


def _w2():
    return P.NumpyAdam(P.ce_loss_grad, P.init_mlp(P.W2_SIZES, 0, "float32"), P.digits_batch(),
                       P.W2_LR)


def _w3():
    return P.NumpySGD(P.ce_loss_grad, P.init_mlp(P.W3_SIZES, 0, "float32"), P.w3_batch(),
                      P.W3_LR)


def _w4():
    x = P.w4_x()
    return lambda: P.w4_numpy(x)


CASES = {"W0": {"numpy": _w0}, "W1": {"numpy": _w1}, "W2": {"numpy": _w2},
         "W3": {"numpy": _w3}, "W4": {"numpy": _w4}}
