"""The errors graphc raises on purpose; all derive from GraphcError."""


class GraphcError(Exception):
    """Base of every error graphc raises on purpose."""


class TracerError(GraphcError, TypeError):
    """Python control flow or a conversion was applied to a traced (symbolic) value."""


class ShapeError(GraphcError, ValueError):
    """Incompatible shapes; the message names the op and the shapes."""


class DTypeError(GraphcError, TypeError):
    """An unsupported or mixed dtype."""


class CompileError(GraphcError):
    """The C compiler failed; the message has its first error and the kept source path."""


class NaNError(GraphcError, FloatingPointError):
    """With graphc.debug_nans(True): an op made a NaN or Inf out of finite inputs; the message
    names the op, the user's file:line that traced it, and its inputs' ranges."""
