"""Warm starts: what a graph's C runner needs, kept on disk beside the built modules, so a new
process that has built the graph before loads its module without scheduling it or generating
its C (the module's cache key is a hash of that C).

A record is found by `digest(graph, fuse)`: a sha256 of everything that decides the generated
module, each part encoded without Python's per-process hashing or object ids (unlike
`Graph.structure_key`, whose `hash()` changes between processes and which leaves out the
graph's in-place layout):

- the graph: inputs (shape, dtype, label), nodes by (op name, sources by position, shape, dtype,
  arg: ints, strings, floats by their hex, tuples, constants by dtype, shape and the sha256 of
  their bytes), outputs by position, aliases (output -> input written in place), its name;
- `fuse`, and every GRAPHC_* setting but the cache's location and logging;
- what build.module_key covers besides the C (compiler, flags, versions, machine, headers);
- the source of the modules that turn a graph into C and C into a module.

A graph holding anything else in an arg (a custom rule's function, a tree definition) has no
digest: it is lowered as usual and never read from a record. Layout::

    <root>/plans/<digest[:2]>/<digest>.pickle    {"format", "module", ...: plain data}

written to a temp file and renamed into place (concurrent writers write the same bytes).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np

from .build import cache_dir, key_context
from .ir import Graph, Literal
from .ops import OPS

FORMAT = 1
# settings that change no generated module (where the cache is, what is logged, when the
# optimized build is waited for, the thread count read at run time)
_UNRELATED_ENV = ("GRAPHC_CACHE_DIR", "GRAPHC_DEBUG", "GRAPHC_TIERED", "GRAPHC_NUM_THREADS",
                  "GRAPHC_BACKEND")
# the modules that decide the C of a graph and the module built from it
_CODE = ("ir.py", "dtypes.py", "ops", "passes", "schedule.py", "codegen", "build.py",
         "native.py", "warm.py", "rt.py", "mutants.py", "sanitize.py", "arrays.py")


class _Unstable(Exception):
    """An arg with no encoding that means the same thing in every process."""


def digest(graph: Graph, fuse: bool) -> str | None:
    """The hex sha256 naming the module `graph` lowers to, or None if the graph holds an arg
    that cannot be encoded stably (see the module docstring) or GRAPHC_WARM_START=0 (no
    record read or written: for code that patches the lowering in a running process, which
    the key cannot see)."""
    if os.environ.get("GRAPHC_WARM_START", "1") in ("", "0"):
        return None
    try:
        parts = [_encode_graph(graph), fuse, _settings(), key_context(), _code_hash()]
    except _Unstable:
        return None
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def load(key: str | None) -> dict | None:
    """The record stored under `key`, or None (none, unreadable, or of another format)."""
    if key is None:
        return None
    with contextlib.suppress(OSError, pickle.UnpicklingError, EOFError, ValueError,
                             AttributeError, ImportError, IndexError, TypeError):
        record = pickle.loads(_path(key).read_bytes())
        if isinstance(record, dict) and record.get("format") == FORMAT:
            return record
    return None


def save(key: str | None, record: dict) -> None:
    """Store `record` (plain data) under `key`, atomically; a failure only costs a warm start."""
    if key is None:
        return
    path = _path(key)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.urandom(16).hex()}.tmp")
        tmp.write_bytes(pickle.dumps({**record, "format": FORMAT}, protocol=4))
        os.replace(tmp, path)


def pack_array(a: np.ndarray) -> tuple[str, tuple[int, ...], bytes]:
    return a.dtype.str, a.shape, np.ascontiguousarray(a).tobytes()


def unpack_array(packed: tuple[str, tuple[int, ...], bytes]) -> np.ndarray:
    dtype, shape, data = packed
    return np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape).copy()


def _path(key: str) -> Path:
    return cache_dir() / "plans" / key[:2] / f"{key}.pickle"


def _encode_graph(graph: Graph) -> list:
    names = {id(n): k for k, n in enumerate(graph.inputs)}
    # an input by position and label (its arg's first item is a per-process counter)
    items: list = [graph.name, [[list(n.shape), n.dtype.name, _encode(n.arg[1])]
                                for n in graph.inputs]]
    for n in graph.nodes:
        if id(n) in names:
            continue
        if OPS.get(n.op.name) is not n.op or n.op.name == "input":
            raise _Unstable(n.op.name)      # an op made at run time (custom rules)
        names[id(n)] = len(names)
        items.append([n.op.name, [names[id(s)] for s in n.src], list(n.shape), n.dtype.name,
                      _encode(n.arg)])
    items.append([names[id(n)] for n in graph.outputs])
    items.append([list(a) for a in graph.aliases])
    return items


def _encode(value) -> object:
    """A JSON value for an arg, equal only for equal args (types kept apart by tags)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return ["b", value]
    if isinstance(value, int):
        return ["i", value]
    if isinstance(value, float):
        return ["f", value.hex()]
    if isinstance(value, tuple):
        return ["t", *map(_encode, value)]
    if isinstance(value, Literal):
        v = value.value
        return ["L", v.dtype.str, list(v.shape), hashlib.sha256(v.tobytes()).hexdigest()]
    if isinstance(value, np.generic):
        return ["n", value.dtype.str, value.tobytes().hex()]
    raise _Unstable(type(value).__name__)


def _settings() -> list:
    return sorted([k, v] for k, v in os.environ.items()
                  if k.startswith("GRAPHC_") and k not in _UNRELATED_ENV)


@functools.cache
def _code_hash() -> str:
    here = Path(__file__).parent
    files = []
    for name in _CODE:
        path = here / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(here).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()
