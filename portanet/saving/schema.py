"""The structure of a saved network's description, checked in one place: every file that
does not have it is a ModelFileError naming the file and the field."""

from __future__ import annotations

from ..errors import ModelFileError
from ..precision import POLICIES

FORMAT = "portanet-network"
TRAINING_FORMAT = "portanet-training-state"  # a network and how its training stood
VERSION = 1
DTYPES = ("float32", "float64")  # of a network
PRECISIONS = (None, *POLICIES)  # a network's precision policy (None in files before them)
REWRITE = ("the file is damaged or was not written by portanet: save the network again with "
           "net.save")


_MISSING = object()


def _field(path, name, value, valid, expected):
    """``value``, the field ``name`` of the description in ``path``; ModelFileError naming both
    where it is missing or not ``valid``, ``expected`` saying what it should be."""
    if value is _MISSING:
        raise ModelFileError(f"{path}: the network description has no field {name!r}; {REWRITE}")
    if not valid(value):
        raise ModelFileError(f"{path}: field {name!r} of the network description must be "
                             f"{expected}, got {value!r:.80}; {REWRITE}")
    return value


def _is(*kinds):
    return lambda value: isinstance(value, kinds)


def _is_list_of(kind):
    return lambda value: isinstance(value, list) and all(isinstance(item, kind)
                                                         for item in value)


def _check_layer(path, name, spec):
    """The structure of the description of one layer (and its sublayers), field ``name``."""
    _field(path, name, spec, _is(dict), "an object describing a layer")
    if "shared" in spec:
        _field(path, f"{name}.shared", spec["shared"], _is(str),
               "the key of a layer before it, such as '0'")
        return
    _field(path, f"{name}.type", spec.get("type", _MISSING), _is(str),
           "the name of a layer type, such as 'FCLayer'")
    _field(path, f"{name}.config", spec.get("config", _MISSING), _is(dict),
           "an object of the layer's settings")
    _field(path, f"{name}.weights", spec.get("weights", _MISSING), _is_list_of(str),
           "a list of the names of the layer's weights")
    sublayers = _field(path, f"{name}.sublayers", spec.get("sublayers", []), _is(list),
                       "a list of layers")
    for index, sublayer in enumerate(sublayers):
        _check_layer(path, f"{name}.sublayers[{index}]", sublayer)


_OTHER_KIND = {
    FORMAT: "a saved network, not a training state: load it with portanet.load, or give the "
            "path of a file that portanet.save_training or BackupAndRestore wrote",
    TRAINING_FORMAT: "a training state, not a network: load it with portanet.load_training "
                     "(or resume with BackupAndRestore), or give the path of a file that "
                     "net.save wrote",
}


def check_header(path, header, kind=FORMAT):
    """ModelFileError naming the field unless ``header`` has the structure :func:`describe`
    gives, its format ``kind`` (the one place a file's description is checked)."""
    found = header.get("format") if isinstance(header, dict) else None
    if found in _OTHER_KIND and found != kind and header.get("version") == VERSION:
        raise ModelFileError(f"{path} is {_OTHER_KIND[found]}")
    if not isinstance(header, dict) or found != kind or header.get("version") != VERSION:
        found = header if isinstance(header, dict) else {}
        raise ModelFileError(f"{path}: unsupported file format {found.get('format')!r} "
                             f"version {found.get('version')!r} (fields 'format' and 'version'; "
                             f"expected {kind} {VERSION}): the file was written by another "
                             "program, or by a newer portanet (upgrade portanet to read it)")
    _field(path, "dtype", header.get("dtype", _MISSING), lambda value: value in DTYPES,
           " or ".join(map(repr, DTYPES)))
    _field(path, "precision", header.get("precision"), lambda value: value in PRECISIONS,
           " or ".join(map(repr, PRECISIONS)))
    _field(path, "loss", header.get("loss", _MISSING), _is(str, type(None)),
           "the name of a loss, or null")
    _field(path, "metadata", header.get("metadata"), _is(dict, type(None)), "an object or null")
    _field(path, "scaler", header.get("scaler"), _is(dict, type(None)), "an object or null")
    layers = _field(path, "layers", header.get("layers", _MISSING), _is(list),
                    "a list of layers")
    for index, spec in enumerate(layers):
        _check_layer(path, f"layers[{index}]", spec)


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_training(path, training):
    """``training``, the field "training" of a training state's description; ModelFileError
    naming the field unless it has the structure :func:`portanet.saving.state.save_training`
    writes."""
    training = _field(path, "training", _MISSING if training is None else training, _is(dict),
                      "an object")
    _field(path, "training.epoch", training.get("epoch", _MISSING), _is_count,
           "an integer >= 0")
    _field(path, "training.random", training.get("random", _MISSING), _is(dict), "an object")
    optimizer = _field(path, "training.optimizer", training.get("optimizer", _MISSING),
                       _is(dict), "an object")
    for name, valid, expected in (
            ("type", _is(str), "the name of an optimizer class"),
            ("config", _is(dict), "an object of the optimizer's settings"),
            ("schedule", _is(bool), "true or false"),
            ("iterations", _is_count, "an integer >= 0"),
            ("learning_rate", lambda v: _is(int, float)(v) and not isinstance(v, bool) and v > 0,
             "a positive number"),
            ("state", _is_list_of(str), "a list of parameter places such as '0/weights'")):
        _field(path, f"training.optimizer.{name}", optimizer.get(name, _MISSING), valid,
               expected)
    _field(path, "training.optimizer.loss_scale", optimizer.get("loss_scale"),
           lambda v: v is None or (isinstance(v, list) and len(v) == 3 and all(
               _is(int, float)(x) and not isinstance(x, bool) for x in v)),
           "null or [scale, good steps, skipped steps]")
    return training
