"""Every error class of nasgen, in one place.

Each is a :class:`NasgenError` (a ``ValueError``): a mistake a user can make, whose message says what was
wrong and what would be valid. The command line prints it in one line and exits with code 2.
"""

__all__ = [
    "ArchitectureError",
    "CheckpointError",
    "CnfError",
    "DataError",
    "EmptySpaceError",
    "ExportError",
    "HashingError",
    "LogError",
    "NasgenError",
    "RejectionBudgetError",
    "RunError",
    "SamplingError",
    "SolverError",
    "SolverTimeout",
    "SpaceError",
    "WhereError",
]


class NasgenError(ValueError):
    """A mistake a user can make: the message says what was wrong and what is valid."""


class SpaceError(NasgenError):
    """An invalid search-space definition."""


class ArchitectureError(NasgenError):
    """An architecture that is malformed or does not belong to its search space."""


class EmptySpaceError(NasgenError):
    """A space (with its constraints) that holds no architecture, so nothing can be drawn from it.

    Every sampling method raises it, before any output is written: one meaning, one exit code (2).
    """


class WhereError(NasgenError):
    """A ``--where`` expression that is malformed or does not fit the search space."""


class RejectionBudgetError(NasgenError):
    """Sampling by rejection ran out of its draw budget before finding enough architectures."""


class SamplingError(NasgenError):
    """A sampling configuration that cannot run: unknown method, bad option, missing samples."""


class SolverError(NasgenError):
    """A solver run that was set up wrongly (bad method, bad sample count, bad constraint)."""


class SolverTimeout(NasgenError):
    """A z3 count that ran out of time or budget before it finished."""


class CnfError(NasgenError):
    """An unreadable or malformed CNF or solutions file, or a solution outside the space."""


class HashingError(NasgenError):
    """A hashing backend that cannot run: missing package, bad setting, failed child."""


class DataError(NasgenError):
    """A data file that is missing, corrupt, of the wrong kind, or fails its checksum."""


class ExportError(NasgenError):
    """A network that cannot be exported to ONNX, or an input shape or network name that does not fit it."""


class CheckpointError(NasgenError):
    """A checkpoint that is missing, already exists, or does not fit its target."""


class RunError(NasgenError):
    """An output directory that cannot be used for the requested run."""


class LogError(NasgenError):
    """A run log that cannot be read back (not JSON, or records without an epoch)."""
