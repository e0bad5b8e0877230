"""Saving and loading trained networks: plain arrays plus a JSON description, in one ``.npz``
(NumPy archive, the default) or ``.safetensors`` file.

Nothing is pickled and no code runs on load: the JSON names built-in layer types, activations
and losses; the arrays are read with ``allow_pickle=False`` (safetensors holds only arrays).
Files are written to a temporary name and renamed into place, so an interrupted save never
corrupts an existing file. A network saved on one backend loads on any other.
"""

from __future__ import annotations

import inspect
import json
import zipfile
from pathlib import Path

import numpy as np

from .._checks import file_path
from ..activations import ACTIVATIONS
from ..data.preprocessing import scaler_from_config
from ..errors import InputError, ModelFileError, PortanetError
from ..layers import LAYERS, ActivationLayer, Layer
from ..losses import LOSSES
from .files import writable_file, write_atomically
from .schema import FORMAT, REWRITE, VERSION, check_header

HEADER = "__portanet__.json"  # the description, in an .npz file
SUFFIXES = (".npz", ".safetensors")  # the formats, chosen by the file name
# the dtypes of safetensors files that weights are read from: bfloat16 (torch's) is the upper
# half of a float32; every weight is then cast to the network's dtype
SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8",
                      "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}


def _name_of(function, registry, what):
    for name, pair in registry.items():
        if function in pair:
            return name
    raise ModelFileError(f"cannot save the {what} {getattr(function, '__name__', function)}: it "
                         f"is not registered; register it with portanet.register_{what}(name, "
                         "function, derivative), here and in the program that loads")


def keyed(layers, prefix="", seen=None):
    """``(key, layer)`` for ``layers`` and the sublayers of containers: keys "0", "1", ...
    and "1.0", "1.0.2", ... inside containers (weights are saved as ``key/name``). A layer used
    at several places comes once, at its first place."""
    seen = {} if seen is None else seen
    for index, layer in enumerate(layers):
        key = f"{prefix}{index}"
        if id(layer) in seen:
            continue
        seen[id(layer)] = key
        yield key, layer
        yield from keyed(getattr(layer, "sublayers", ()), key + ".", seen)


def _describe_layer(key, layer, seen) -> dict:
    """The JSON-able description of ``layer`` at ``key``; ``{"shared": first key}`` where a
    layer already described (``seen``: id -> key) is used again."""
    if id(layer) in seen:
        return {"shared": seen[id(layer)]}
    seen[id(layer)] = key
    kind = type(layer).__name__
    if LAYERS.get(kind) is not type(layer):
        raise ModelFileError(f"layer {key} ({kind}) is not a registered portanet layer and "
                             "cannot be saved: decorate its class with "
                             "@portanet.register_layer (here and where it is loaded)")
    config = {name: _reference(key, value, seen) if isinstance(value, Layer) else value
              for name, value in layer.config().items()}
    if isinstance(layer, ActivationLayer):
        config = {"activation": _name_of(layer.activation, ACTIVATIONS, "activation")}
    spec = {"type": kind, "config": config, "weights": list(layer.params + layer.buffers)}
    if getattr(layer, "sublayers", ()):
        spec["sublayers"] = [_describe_layer(f"{key}.{index}", sublayer, seen)
                             for index, sublayer in enumerate(layer.sublayers)]
    else:
        _check_rebuilds(key, layer, config)
    return spec


def _reference(key, other, seen) -> dict:
    """A setting of the layer at ``key`` that is another layer (a TiedDense's embedding), saved
    as ``{"layer": that layer's key}``: the file holds its weights once."""
    if id(other) not in seen:
        raise ModelFileError(f"layer {key} uses the weights of {other!r}, which is not before it "
                             "in the network: add that layer first")
    return {"layer": seen[id(other)]}


def _referenced(path, key, config, built):
    """``config`` of the layer at ``key`` with each ``{"layer": key}`` setting replaced by that
    layer (built before it)."""
    config = dict(config)
    for name, value in config.items():
        if isinstance(value, dict) and set(value) == {"layer"}:
            if value["layer"] not in built:
                raise ModelFileError(f"{path}: layer {key} refers to layer {value['layer']!r} "
                                     f"(field '{_field_of(key)}.config.{name}'), which comes "
                                     f"before it nowhere in the file; {REWRITE}")
            config[name] = built[value["layer"]]
    return config


def _check_rebuilds(key, layer, config):
    """ModelFileError unless loading can rebuild ``layer`` as ``type(layer)(**config)``: a
    layer's config() gives its constructor's arguments (Layer's own, ``{}``, suits only a
    constructor that takes none)."""
    kind = type(layer)
    signature = inspect.signature(kind)
    named = [parameter.name for parameter in signature.parameters.values()
             if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)]
    if kind.config is Layer.config:
        if not named:
            return
        reason = f"{kind.__name__} has no config() of its own"
    else:
        try:
            signature.bind(**config)
            return
        except TypeError as exc:
            reason = str(exc)
    example = ", ".join(f"{name!r}: self.{name}" for name in named)
    raise ModelFileError(f"layer {key} ({kind.__name__}) cannot be saved: config() gives "
                         f"{config!r}, which would not rebuild it when loaded ({reason}); "
                         f"write config() returning the constructor's arguments, e.g. "
                         f"def config(self): return {{{example}}}")


def describe(network) -> dict:
    """The JSON-able description of ``network`` (architecture, loss, dtype, metadata); a
    container's layers are described in its ``sublayers``, a layer used again as
    ``{"shared": key of its first use}``."""
    seen = {}
    layers = [_describe_layer(str(index), layer, seen)
              for index, layer in enumerate(network.layers)]
    loss = _name_of(network.loss, LOSSES, "loss") if network.loss is not None else None
    scaler = network.scaler.config() if network.scaler is not None else None
    return {"format": FORMAT, "version": VERSION, "dtype": network.working_dtype(),
            "precision": network.precision, "loss": loss, "layers": layers,
            "metadata": network.metadata, "scaler": scaler}


def model_path(path, what="the network") -> Path:
    """``path`` as a Path if a network can be saved there (a writable place, a known suffix);
    ``what`` names the file in the error."""
    return writable_file(path, what, SUFFIXES, " (NumPy archive or safetensors)")


def saved_path(path) -> Path:
    """``path`` as a Path if something is there to load; else ModelFileError."""
    path = file_path("path", path)
    if not path.exists():
        raise ModelFileError(f"no saved network at {path}")
    return path


def weights(network):
    """Every layer's parameters and buffers as NumPy arrays, named ``"<layer key>/<name>"``
    (the layer's index, and its place in containers: "2.0.1")."""
    return {f"{key}/{name}": value for key, layer in keyed(network.layers)
            for name, value in zip(layer.params + layer.buffers, layer.get_weights())}


def _safetensors():
    try:
        import safetensors.numpy
    except ImportError:
        raise PortanetError('.safetensors files need the safetensors package: pip install '
                            '"portanet[safetensors]"') from None
    return safetensors


def save(network, path) -> Path:
    """Write ``network`` to ``path`` atomically; return the path.

    The suffix chooses the format: ``.npz`` (NumPy archive) or ``.safetensors`` (the
    description as JSON in the file's ``__metadata__``, under "portanet").
    """
    return write(model_path(path), describe(network), weights(network))


def write(path, header, arrays, what="the network") -> Path:
    """Write the description ``header`` and the NumPy ``arrays`` to ``path`` (a checked
    :func:`model_path`) atomically, in the format its suffix names."""
    text = json.dumps(header)
    if path.suffix == ".safetensors":
        contiguous = {name: np.ascontiguousarray(value) for name, value in arrays.items()}
        data = _safetensors().numpy.save(contiguous, metadata={"format": header["format"],
                                                               "portanet": text})
        return write_atomically(path, lambda stream: stream.write(data), what)
    arrays = {**arrays, HEADER: np.frombuffer(text.encode(), dtype=np.uint8)}
    return write_atomically(path, lambda stream: np.savez(stream, **arrays), what)


def _from_safetensors(path, name, tensor):
    """The NumPy array of one tensor that ``safetensors.deserialize`` gave."""
    code = tensor["dtype"]
    if code not in SAFETENSORS_DTYPES:
        raise ModelFileError(f"{path}: weight array {name!r} is stored as {code}, which "
                             "portanet does not read: store it as F32, F64, F16 or BF16")
    values = np.frombuffer(tensor["data"], SAFETENSORS_DTYPES[code])
    if code == "BF16":
        values = (values.astype("<u4") << 16).view("<f4")
    return values.reshape(tensor["shape"])


def _read_safetensors(path):
    """The header text and the arrays of a .safetensors network file."""
    library = _safetensors()
    try:
        with library.safe_open(path, framework="numpy") as archive:
            metadata = archive.metadata() or {}
        tensors = library.deserialize(Path(path).read_bytes())
    except FileNotFoundError:
        raise ModelFileError(f"no saved network at {path}") from None
    except (library.SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{path} is not a readable safetensors file (truncated or another "
                             f"format): {exc}") from None
    if "portanet" not in metadata:
        raise ModelFileError(f"{path} is a safetensors file but not a portanet network (no "
                             "'portanet' entry in its metadata)")
    return metadata["portanet"], {name: _from_safetensors(path, name, tensor)
                                  for name, tensor in tensors}


def _entry(path, archive, name):
    """The array ``name`` of an open .npz ``archive``."""
    try:
        return archive[name]
    except ValueError:  # NumPy's message would suggest allow_pickle: never
        raise ModelFileError(f"{path}: entry {name!r} is not a plain array (it is damaged, or "
                             f"holds Python objects, which portanet never unpickles); {REWRITE}"
                             ) from None


def _read_npz(path):
    """The header text and the arrays of an .npz network file."""
    try:
        with open(path, "rb") as stream:
            if not zipfile.is_zipfile(stream):
                raise ModelFileError(f"{path} is not a saved network: it is no .npz archive "
                                     "(truncated, a single .npy array, or another format?); "
                                     "load a file that net.save wrote (.npz or .safetensors)")
            with np.load(stream, allow_pickle=False) as archive:
                arrays = {name: _entry(path, archive, name) for name in archive.files}
    except FileNotFoundError:
        raise ModelFileError(f"no saved network at {path}") from None
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ModelFileError(f"{path} is not a readable portanet network file (truncated or "
                             f"another format): {exc}") from None
    if HEADER not in arrays:
        raise ModelFileError(f"{path} is an .npz file but not a portanet network (no header)")
    try:
        return arrays.pop(HEADER).tobytes().decode(), arrays
    except UnicodeDecodeError as exc:
        raise ModelFileError(f"{path}: the network description is damaged: {exc}") from None


def read_file(path, kind=FORMAT):
    """The header dict and the arrays of a saved network (``kind``: or of a training state),
    or a ModelFileError saying why not.

    ``.safetensors`` files are read as such, any other as ``.npz``."""
    path = saved_path(path)
    reader = _read_safetensors if path.suffix == ".safetensors" else _read_npz
    text, arrays = reader(path)
    try:
        header = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ModelFileError(f"{path}: the network description is damaged: {exc}") from None
    check_header(path, header, kind)
    return header, arrays


def _in_dtype(path, arrays, dtype):
    """The weight ``arrays`` cast to ``dtype``, the network's; ModelFileError naming an array
    that does not hold real numbers."""
    for name, value in arrays.items():
        if value.dtype.kind not in "biuf":
            raise ModelFileError(f"{path}: weight array {name!r} holds {value.dtype} values, "
                                 f"not numbers; {REWRITE}")
    return {name: value.astype(dtype) for name, value in arrays.items()}


def _field_of(key):
    """The field of the description that describes the layer at ``key`` ("1.0": layers[1]'s
    first sublayer)."""
    return "layers[" + "].sublayers[".join(key.split(".")) + "]"


def _build(path, key, spec, arrays, dtype, built):
    """The layer ``spec`` describes (with its sublayers), in ``dtype``, its weights set from
    ``arrays``; ``built`` (key -> layer) gives shared layers back."""
    field = _field_of(key)
    if "shared" in spec:
        if spec["shared"] not in built:
            raise ModelFileError(f"{path}: layer {key} shares layer {spec['shared']!r} (field "
                                 f"'{field}.shared'), which comes before it nowhere "
                                 f"in the file; {REWRITE}")
        return built[spec["shared"]]
    if spec["type"] not in LAYERS:
        raise ModelFileError(f"{path}: layer {key} has unknown type {spec['type']!r} (field "
                             f"'{field}.type'): if it is your own layer, register its "
                             "class with portanet.register_layer before loading")
    kind = LAYERS[spec["type"]]
    container = hasattr(kind, "from_sublayers")
    if container != ("sublayers" in spec):
        raise ModelFileError(f"{path}: layer {key} ({spec['type']}) "
                             f"{'needs' if container else 'cannot have'} the field "
                             f"'{field}.sublayers'; {REWRITE}")
    sublayers = [_build(path, f"{key}.{index}", sub, arrays, dtype, built)
                 for index, sub in enumerate(spec.get("sublayers", []))]
    config = _referenced(path, key, spec["config"], built)
    try:
        layer = (kind.from_sublayers(sublayers, **config) if container else kind(**config))
    except (PortanetError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: layer {key} ({spec['type']}) cannot be made from its "
                             f"saved settings, field '{field}.config': {exc}") from None
    if not container:
        layer.astype(dtype)  # before the weights are set, so they keep their precision
    if spec["weights"] != list(layer.params + layer.buffers):
        raise ModelFileError(f"{path}: field '{field}.weights' lists {spec['weights']}, but a "
                             f"{spec['type']} has the weights {list(layer.params + layer.buffers)};"
                             f" {REWRITE}")
    missing = [name for name in spec["weights"] if f"{key}/{name}" not in arrays]
    if missing:
        raise ModelFileError(f"{path}: weights {missing} of layer {key} (field "
                             f"'{field}.weights') are missing from the file; {REWRITE}")
    try:
        layer.set_weights([arrays[f"{key}/{name}"] for name in spec["weights"]])
    except PortanetError as exc:
        raise ModelFileError(f"{path}: the weights of layer {key} do not match its description "
                             f"(field '{field}.weights'): {exc}; {REWRITE}") from None
    built[key] = layer
    return layer


def _scaler(path, config):
    """The input scaler the description's field "scaler" gives, or None."""
    if config is None:
        return None
    try:
        return scaler_from_config(config)
    except InputError as exc:
        raise ModelFileError(f"{path}: field 'scaler' of the network description does not "
                             f"make a scaler: {exc}; {REWRITE}") from None


def read(path):
    """The header (dict), the layers (built on the current backend, with their weights, in the
    header's dtype) and the input scaler (or None) of the network saved at ``path``;
    ModelFileError naming the file and the field where the file cannot give them."""
    header, arrays = read_file(path)
    return (header, *build(path, header, arrays))


def build(path, header, arrays):
    """The layers and the input scaler that ``header`` and ``arrays`` (of the file ``path``,
    as :func:`read_file` gives them) describe."""
    loss = header["loss"]
    if loss is not None and loss not in LOSSES:
        raise ModelFileError(f"{path}: field 'loss' names {loss!r}, which is not a registered "
                             "loss: if it is your own, register it with portanet.register_loss "
                             "before loading")
    dtype, built = header["dtype"], {}
    arrays = _in_dtype(path, arrays, dtype)
    layers = [_build(path, str(index), spec, arrays, dtype, built)
              for index, spec in enumerate(header["layers"])]
    return layers, _scaler(path, header.get("scaler"))
