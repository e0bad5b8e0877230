"""portanet's exceptions: every error a user can cause is one of these."""


class PortanetError(Exception):
    """Base class of all errors raised by portanet."""


class BackendError(PortanetError):
    """The requested array backend or device cannot be used."""


class InputError(PortanetError, ValueError):
    """Data or arguments given to portanet are not usable (wrong shape, NaN, empty, ...)."""


class ShapeError(InputError):
    """Layer sizes do not chain, or data does not fit the network's input."""


class TrainingError(PortanetError, FloatingPointError):
    """Training cannot go on (the loss is no longer finite)."""


class DataError(PortanetError):
    """A data set file is missing, corrupt or cannot be downloaded."""


class ModelFileError(PortanetError):
    """A saved network file is missing, truncated, or does not match."""


class WriteError(PortanetError, OSError):
    """A file could not be written (a full disk, a read-only or vanished folder); the file that
    was there before is unchanged."""


class DistributedError(PortanetError):
    """Distributed training cannot start or go on (no MPI, ranks that disagree, a lost rank)."""


class CompileWarning(UserWarning):
    """A step could not be compiled (or the backend has no compiler): it runs eagerly."""


class InputWarning(UserWarning):
    """Inputs that are usable but look wrong (e.g. far outside the range a scaler was fitted on)."""
