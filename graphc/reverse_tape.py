"""The runner of a reverse tape (codegen/scalar_tape.py): one call of the prebuilt
interpreter computes the value and the gradients."""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import numpy as np

from . import build, fastcall
from .build import load_module, load_prebuilt
from .codegen.scalar_tape import ReverseTape, interpreter_source
from .nans import STATE as NANS

# The interpreter built at install (setup.py runs `prebuild`), so that a fresh install's
# first tape runs no compiler; absent or stale (other C, toolchain or versions), the first
# use builds it into the disk cache as any module.
PREBUILT = Path(__file__).resolve().parent / "_prebuilt"


@functools.cache
def _interpreter():
    return load_prebuilt(PREBUILT, *interpreter_source()) or load_module(*interpreter_source())


def prebuild(package_dir: str) -> None:
    """Build the interpreter into `package_dir`/_prebuilt (graphc's package as installed)."""
    build.prebuild(Path(package_dir) / PREBUILT.name, *interpreter_source())


class ReverseTapeRunner:
    """Called with the inputs (arrays or Python floats, float64), returns [value (a 0-d
    array; left out without `with_value`), one gradient per differentiated input]. The work
    array (values, then cotangents) is kept per calling thread: thread-safe, and a large
    tape's is not allocated (and page-faulted) again on every call. A signature's plan is
    the same call in C (fast_call), without this Python path's ~3 µs."""

    def __init__(self, tape: ReverseTape, input_shapes: list[tuple[int, ...]],
                 grad_shapes: list[tuple[int, ...]], with_value: bool = True):
        self.ffi, self._lib = _interpreter()
        self.tape = tape
        self.input_shapes = input_shapes
        self.grad_shapes = grad_shapes
        self.with_value = with_value
        self.stats = {"tape_rows": tape.n_rows, "slots": tape.n_slots}
        self.source = interpreter_source()[0]      # the same C for every graph
        ffi = self.ffi
        self._fn = functools.partial(
            self._lib.gc_scalar_tape, ffi.from_buffer("int32_t[]", tape.cells), tape.n_rows,
            ffi.from_buffer("int64_t[]", tape.layout), ffi.from_buffer("double[]", tape.init))
        self._local = threading.local()

    def _work(self) -> tuple:
        """The calling thread's (work array, pointer to its values, to its cotangents)."""
        work = getattr(self._local, "work", None)
        if work is None:
            n = self.tape.n_slots
            array = np.empty(2 * n)
            values = self.ffi.from_buffer("double[]", array)
            work = self._local.work = (array, values, values + n)
        return work

    def __call__(self, leaves: list) -> list:
        ffi = self.ffi
        ins = [np.ascontiguousarray(x, dtype=np.float64) for x in leaves]
        grads = [np.empty(shape) for shape in self.grad_shapes]
        io = ffi.new("void *[]", [ffi.from_buffer(a) for a in ins + grads])
        _, values, cotangents = self._work()
        value = self._fn(io, values, cotangents)
        return [np.array(value), *grads] if self.with_value else grads

    def fast_call(self, general, kinds: str, tree: tuple[int, ...], python=()):
        """The call in C (graphc._fastcall.TapeCall) for positional arguments of the kinds
        `kinds` ('f' a Python float, 'a' a float64 array of the input's shape), the outputs
        fresh arrays in the tree `tree` (Python floats at the positions `python`); any other
        call goes to `general`. None where the extension is not available or the signature
        has other kinds."""
        fast = fastcall.module()
        n = len(self.input_shapes)
        if (fast is None or set(kinds) - {"f", "a"} or len(kinds) != n
                or n > fast.TAPE_ARGS_MAX or len(self.grad_shapes) + 1 > fast.TAPE_ARGS_MAX):
            return None
        ffi, tape = self.ffi, self.tape
        address = [tape.cells.ctypes.data, tape.layout.ctypes.data, tape.init.ctypes.data]
        shapes = [() for _ in range(self.with_value)] + list(self.grad_shapes)
        shapes = [None if j in python else shape for j, shape in enumerate(shapes)]
        return fast.TapeCall(
            int(ffi.cast("uintptr_t", ffi.addressof(self._lib, "gc_scalar_tape"))), general,
            NANS, self, address[0], tape.n_rows, *address[1:], tape.n_slots, kinds,
            tuple(s[0] if s else -1 for s in self.input_shapes), tuple(shapes),
            self.with_value, tree, np.ndarray, np.empty)

    def annotated_source(self) -> str:
        return (f"/* reverse tape: {self.tape.n_rows} rows over {self.tape.n_slots} values, run "
                "by this interpreter */\n" + self.source)
