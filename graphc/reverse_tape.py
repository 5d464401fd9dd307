"""The runner of a reverse tape (codegen/scalar_tape.py): one call of the prebuilt
interpreter computes the value and the gradients."""

from __future__ import annotations

import functools

import numpy as np

from .build import load_module
from .codegen.scalar_tape import ReverseTape, interpreter_source


@functools.cache
def _interpreter():
    return load_module(*interpreter_source())


class ReverseTapeRunner:
    """Called with the inputs (arrays or Python floats, float64), returns [value (a 0-d
    array; left out without `with_value`), one gradient per differentiated input]. Work
    arrays are per call: thread-safe."""

    def __init__(self, tape: ReverseTape, grad_shapes: list[tuple[int, ...]],
                 with_value: bool = True):
        self.ffi, lib = _interpreter()
        self.tape = tape
        self.grad_shapes = grad_shapes
        self.with_value = with_value
        self.stats = {"tape_rows": tape.n_rows, "slots": tape.n_slots}
        self.source = interpreter_source()[0]      # the same C for every graph
        ffi = self.ffi
        self._fn = functools.partial(
            lib.gc_scalar_tape, ffi.from_buffer("int32_t[]", tape.cells), tape.n_rows,
            ffi.from_buffer("int64_t[]", tape.layout), ffi.from_buffer("double[]", tape.init))

    def __call__(self, leaves: list) -> list:
        ffi, n = self.ffi, self.tape.n_slots
        ins = [np.ascontiguousarray(x, dtype=np.float64) for x in leaves]
        grads = [np.empty(shape) for shape in self.grad_shapes]
        io = ffi.new("void *[]", [ffi.from_buffer(a) for a in ins + grads])
        work = ffi.from_buffer("double[]", np.empty(2 * n))     # values, then cotangents
        value = self._fn(io, work, work + n)
        return [np.array(value), *grads] if self.with_value else grads

    def annotated_source(self) -> str:
        return (f"/* reverse tape: {self.tape.n_rows} rows over {self.tape.n_slots} values, run "
                "by this interpreter */\n" + self.source)
