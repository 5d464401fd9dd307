"""Arguments at the boundary between Python and a backend: converted to the traced dtype and
layout, or checked to be the exact memory an in-place output is written into."""

from __future__ import annotations

import numpy as np

from .errors import GraphcError


def as_array(x, dtype: np.dtype) -> np.ndarray:
    """The input as a C-contiguous array of the traced dtype (a copy only when needed)."""
    a = np.asarray(x, dtype=dtype)
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def in_place_array(x, dtype: np.dtype, position: int) -> np.ndarray:
    """An argument that an output is written into: it must already be that memory."""
    if not (type(x) is np.ndarray and x.dtype == dtype and x.flags.c_contiguous
            and x.flags.writeable):
        raise GraphcError(f"argument {position} is updated in place: it must be a writeable, "
                          f"C-contiguous {np.dtype(dtype)} numpy array, got "
                          f"{getattr(x, 'dtype', type(x).__name__)} {np.shape(x)}")
    return x
