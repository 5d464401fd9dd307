"""The dtype table: numpy <-> C types, promotion, weak Python scalars."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DTypeError


@dataclass(frozen=True, slots=True, eq=False)     # singletons: identity equality and hash
class DType:
    name: str
    np: np.dtype
    c: str           # C type in generated code
    kind: str        # "f" float, "i" signed int, "b" bool
    rank: int        # position in the promotion lattice within its kind

    @property
    def is_float(self) -> bool:
        return self.kind == "f"

    @property
    def itemsize(self) -> int:
        return self.np.itemsize

    @property
    def short(self) -> str:
        return {"float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64",
                "bool": "bool"}[self.name]

    def __repr__(self) -> str:
        return self.name


bool_ = DType("bool", np.dtype(np.bool_), "unsigned char", "b", 0)
int32 = DType("int32", np.dtype(np.int32), "int32_t", "i", 1)
int64 = DType("int64", np.dtype(np.int64), "int64_t", "i", 2)
float32 = DType("float32", np.dtype(np.float32), "float", "f", 1)
float64 = DType("float64", np.dtype(np.float64), "double", "f", 2)

ALL = (bool_, int32, int64, float32, float64)
_BY_NP = {d.np: d for d in ALL}


def from_numpy(dt, what: str = "input") -> DType:
    """The graphc DType of a numpy dtype, or a DTypeError naming what was refused."""
    try:
        dt = np.dtype(dt)
    except TypeError as e:
        raise DTypeError(f"{what}: {dt!r} is not a dtype") from e
    found = _BY_NP.get(dt) or _BY_NP.get(dt.newbyteorder("="))
    if found is None:
        raise DTypeError(
            f"{what}: dtype {dt} is not supported (graphc supports float32, float64, "
            "int32, int64 and bool)")
    return found


def promote(a: DType, b: DType) -> DType:
    """numpy's promotion restricted to graphc's dtypes (int32 + float32 -> float64 as numpy)."""
    if a is b:
        return a
    if a.kind == b.kind:
        return a if a.rank >= b.rank else b
    if a.kind == "b":
        return b
    if b.kind == "b":
        return a
    f, i = (a, b) if a.is_float else (b, a)
    # numpy: int32/int64 with float32 -> float64
    return float64 if i.rank >= 1 and f is float32 else f


def weak_result(strong: DType, weak: DType) -> DType:
    """Dtype when a strong value meets a weakly typed Python scalar of kind `weak`."""
    if weak.kind == "f" and not strong.is_float:
        return float64
    if weak.kind == "i" and strong.kind == "b":
        return int64
    return strong


def python_scalar_dtype(v) -> DType:
    if isinstance(v, (bool, np.bool_)):
        return bool_
    if isinstance(v, (int, np.integer)):
        return int64
    if isinstance(v, (float, np.floating)):
        return float64
    raise DTypeError(f"{type(v).__name__} value {v!r} is not a supported scalar")
