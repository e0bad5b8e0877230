"""Saving and loading trained networks: plain arrays plus a JSON description, in one ``.npz``
(NumPy archive, the default) or ``.safetensors`` file.

Nothing is pickled and no code runs on load: the JSON names built-in layer types, activations
and losses; the arrays are read with ``allow_pickle=False`` (safetensors holds only arrays).
Files are written to a temporary name and renamed into place, so an interrupted save never
corrupts an existing file. A network saved on one backend loads on any other.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .._checks import file_path
from ..activations import ACTIVATIONS
from ..data.preprocessing import scaler_from_config
from ..errors import InputError, ModelFileError, PortanetError
from ..layers import LAYERS, ActivationLayer
from ..losses import LOSSES
from .files import check_writable, write_atomically

FORMAT = "portanet-network"
VERSION = 1
HEADER = "__portanet__.json"
SUFFIXES = (".npz", ".safetensors")  # the formats, chosen by the file name


def _name_of(function, registry, what):
    for name, pair in registry.items():
        if function in pair:
            return name
    raise ModelFileError(f"cannot save the {what} {getattr(function, '__name__', function)}: it "
                         f"is not registered; register it with portanet.register_{what}(name, "
                         "function, derivative), here and in the program that loads")


def _keyed(layers, prefix="", seen=None):
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
        yield from _keyed(getattr(layer, "sublayers", ()), key + ".", seen)


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
    config = layer.config()
    if isinstance(layer, ActivationLayer):
        config = {"activation": _name_of(layer.activation, ACTIVATIONS, "activation")}
    spec = {"type": kind, "config": config, "weights": list(layer.params + layer.buffers)}
    if getattr(layer, "sublayers", ()):
        spec["sublayers"] = [_describe_layer(f"{key}.{index}", sublayer, seen)
                             for index, sublayer in enumerate(layer.sublayers)]
    return spec


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
            "loss": loss, "layers": layers, "metadata": network.metadata, "scaler": scaler}


def model_path(path) -> Path:
    """``path`` as a Path if a network can be saved there (a writable place, a known suffix)."""
    path = check_writable(path)
    if path.suffix not in SUFFIXES:
        raise InputError(f"cannot save the network to {str(path)!r}: unknown file suffix "
                         f"{path.suffix!r}; use {' or '.join(SUFFIXES)} (NumPy archive or "
                         "safetensors)")
    return path


def _weights(network):
    """Every layer's parameters and buffers as NumPy arrays, named ``"<layer key>/<name>"``
    (the layer's index, and its place in containers: "2.0.1")."""
    return {f"{key}/{name}": value for key, layer in _keyed(network.layers)
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
    path = model_path(path)
    header = json.dumps(describe(network))
    arrays = _weights(network)
    if path.suffix == ".safetensors":
        contiguous = {name: np.ascontiguousarray(value) for name, value in arrays.items()}
        data = _safetensors().numpy.save(contiguous, metadata={"format": FORMAT,
                                                               "portanet": header})
        return write_atomically(path, lambda stream: stream.write(data))
    arrays[HEADER] = np.frombuffer(header.encode(), dtype=np.uint8)
    return write_atomically(path, lambda stream: np.savez(stream, **arrays))


def _read_safetensors(path):
    """The header text and the arrays of a .safetensors network file."""
    library = _safetensors()
    try:
        with library.safe_open(path, framework="numpy") as archive:
            metadata = archive.metadata() or {}
            arrays = {name: archive.get_tensor(name) for name in archive.keys()}
    except FileNotFoundError:
        raise ModelFileError(f"no saved network at {path}") from None
    except (library.SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{path} is not a readable safetensors file (truncated or another "
                             f"format): {exc}") from None
    if "portanet" not in metadata:
        raise ModelFileError(f"{path} is a safetensors file but not a portanet network (no "
                             "'portanet' entry in its metadata)")
    return metadata["portanet"], arrays


def _read_npz(path):
    """The header text and the arrays of an .npz network file."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise ModelFileError(f"no saved network at {path}") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise ModelFileError(f"{path} is not a readable portanet network file (truncated or "
                             f"another format): {exc}") from None
    if HEADER not in arrays:
        raise ModelFileError(f"{path} is an .npz file but not a portanet network (no header)")
    try:
        return arrays.pop(HEADER).tobytes().decode(), arrays
    except UnicodeDecodeError as exc:
        raise ModelFileError(f"{path}: the network description is damaged: {exc}") from None


def _read(path):
    """The header dict and the arrays of a saved network, or a ModelFileError saying why not.

    ``.safetensors`` files are read as such, any other as ``.npz``."""
    reader = _read_safetensors if file_path("path", path).suffix == ".safetensors" else _read_npz
    text, arrays = reader(path)
    try:
        header = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: the network description is damaged: {exc}") from None
    header = header if isinstance(header, dict) else {}
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise ModelFileError(f"{path}: unsupported file format {header.get('format')!r} "
                             f"version {header.get('version')!r} (expected {FORMAT} {VERSION})")
    return header, arrays


def _build(path, key, spec, arrays, dtype, built):
    """The layer ``spec`` describes (with its sublayers), in ``dtype``, its weights set from
    ``arrays``; ``built`` (key -> layer) gives shared layers back."""
    if "shared" in spec:
        if spec["shared"] not in built:
            raise ModelFileError(f"{path}: layer {key} shares layer {spec['shared']!r}, which "
                                 "comes before it nowhere in the file")
        return built[spec["shared"]]
    if spec["type"] not in LAYERS:
        raise ModelFileError(f"{path}: layer {key} has unknown type {spec['type']!r}: "
                             "if it is your own layer, register its class with "
                             "portanet.register_layer before loading")
    kind = LAYERS[spec["type"]]
    if "sublayers" in spec:
        layer = kind.from_sublayers([_build(path, f"{key}.{index}", sub, arrays, dtype, built)
                                     for index, sub in enumerate(spec["sublayers"])],
                                    **spec["config"])
    else:
        layer = kind(**spec["config"])
        layer.astype(dtype)  # before the weights are set, so they keep their precision
    missing = [name for name in spec["weights"] if f"{key}/{name}" not in arrays]
    if missing:
        raise ModelFileError(f"{path}: weights {missing} of layer {key} are missing")
    layer.set_weights([arrays[f"{key}/{name}"] for name in spec["weights"]])
    built[key] = layer
    return layer


def read(path):
    """The header (dict) and the layers (built on the current backend, with their weights) of
    the network saved at ``path``; ModelFileError where the file cannot give them."""
    header, arrays = _read(path)
    built = {}
    try:
        layers = [_build(path, str(index), spec, arrays, header["dtype"], built)
                  for index, spec in enumerate(header["layers"])]
    except ModelFileError:
        raise
    except (PortanetError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{path}: the saved weights do not match the saved architecture: "
                             f"{exc}") from None
    return header, layers


def scaler(header):
    """The input scaler a saved network's ``header`` describes, or None."""
    return scaler_from_config(header["scaler"]) if header.get("scaler") else None
