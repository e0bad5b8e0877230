"""Broken and hostile network files: each is refused with a ModelFileError naming the file and
the field (or entry) at fault, never a raw error nor advice to unpickle; half-precision
safetensors (as torch writes them) load, cast to the network's dtype."""

import json
import re

import numpy as np
import pytest
from helpers import assert_backend_array

import portanet
from portanet import ActivationLayer, FCLayer, Network, Sequential
from portanet.preprocessing import Standardizer
from portanet.saving.format import HEADER


def small_net(dtype=None):
    """A network with a container and a scaler: every field of a description is there."""
    net = Network([FCLayer(4, 6), ActivationLayer("relu"), Sequential([FCLayer(6, 3)])],
                  dtype=dtype)
    net.use("mse")
    net.scaler = Standardizer().fit(np.arange(8.0).reshape(2, 4))
    return net


def refused(path, *fields):
    """Loading ``path`` raises a ModelFileError naming it and matching each of ``fields``."""
    with pytest.raises(portanet.ModelFileError) as caught:
        portanet.load(path)
    message = str(caught.value)
    assert str(path) in message
    for field in fields:
        assert re.search(field, message), f"{field!r} not in {message!r}"
    assert "allow_pickle" not in message and "pickle.load" not in message


def layer(index):
    return lambda header: header["layers"][index]


def edit(get, change):
    """A change of the description: ``change(part)`` on the part ``get(header)`` gives; it
    returns the description."""
    def changed(header):
        change(get(header))
        return header
    return changed


def setting(key, value):
    return lambda part: part.__setitem__(key, value)


def without(key):
    return lambda part: part.pop(key)


def whole(header):
    return header


# each: (how the description is damaged, what the message must name)
BROKEN_DESCRIPTIONS = {
    "no dtype": (edit(whole, without("dtype")), r"no field 'dtype'"),
    "integer dtype": (edit(whole, setting("dtype", "int8")), r"'dtype'.*'float32' or 'float64'"),
    "no loss": (edit(whole, without("loss")), r"no field 'loss'"),
    "loss not a name": (edit(whole, setting("loss", 3)), r"'loss'"),
    "unregistered loss": (edit(whole, setting("loss", "hinge")), r"'loss'.*register_loss"),
    "no layers": (edit(whole, without("layers")), r"no field 'layers'"),
    "layers not a list": (edit(whole, setting("layers", {"0": {}})), r"'layers' .*a list"),
    "layer not an object": (edit(lambda header: header["layers"], setting(0, 3)),
                            r"'layers\[0\]'"),
    "layer without type": (edit(layer(0), without("type")), r"'layers\[0\]\.type'"),
    "layer without config": (edit(layer(0), without("config")), r"'layers\[0\]\.config'"),
    "layer without weights": (edit(layer(0), without("weights")), r"'layers\[0\]\.weights'"),
    "type not a name": (edit(layer(0), setting("type", ["FCLayer"])), r"'layers\[0\]\.type'"),
    "unknown type": (edit(layer(0), setting("type", "Quantum")),
                     r"'layers\[0\]\.type'.*register_layer"),
    "config not an object": (edit(layer(0), setting("config", [4, 6])),
                             r"'layers\[0\]\.config'"),
    "unknown setting": (edit(lambda header: header["layers"][0]["config"],
                             setting("colour", "red")), r"'layers\[0\]\.config'.*colour"),
    "bad setting": (edit(lambda header: header["layers"][0]["config"],
                         setting("output_size", -3)), r"'layers\[0\]\.config'.*output_size"),
    "unknown activation": (edit(layer(1), setting("config", {"activation": "swish"})),
                           r"'layers\[1\]\.config'.*register_activation"),
    "weights not names": (edit(layer(0), setting("weights", [0, 1])),
                          r"'layers\[0\]\.weights'"),
    "weights swapped": (edit(layer(0), setting("weights", ["bias", "weights"])),
                        r"'layers\[0\]\.weights'.*\['weights', 'bias'\]"),
    "shared with nothing before": (edit(lambda header: header["layers"],
                                        setting(0, {"shared": "2"})), r"'layers\[0\]\.shared'"),
    "sublayers on a plain layer": (edit(layer(0), setting("sublayers", [])),
                                   r"'layers\[0\]\.sublayers'"),
    "container without sublayers": (edit(layer(2), without("sublayers")),
                                    r"'layers\[2\]\.sublayers'"),
    "sublayers not a list": (edit(layer(2), setting("sublayers", {})),
                             r"'layers\[2\]\.sublayers'"),
    "sublayer without type": (edit(lambda header: header["layers"][2]["sublayers"][0],
                                   without("type")), r"'layers\[2\]\.sublayers\[0\]\.type'"),
    "metadata not an object": (edit(whole, setting("metadata", ["note"])), r"'metadata'"),
    "scaler not an object": (edit(whole, setting("scaler", "standard")), r"'scaler'"),
    "scaler of unknown type": (edit(lambda header: header["scaler"], setting("type", "Robust")),
                               r"'scaler'.*Robust"),
    "scaler without a statistic": (edit(lambda header: header["scaler"], without("mean")),
                                   r"'scaler'.*mean"),
    "scaler std 0": (edit(lambda header: header["scaler"], setting("std", 0.0)),
                     r"'scaler'.*std must be a positive number, got 0"),
    "scaler std NaN": (edit(lambda header: header["scaler"], setting("std", float("nan"))),
                       r"'scaler'.*std must be a finite number, got nan"),
    "scaler std infinite": (edit(lambda header: header["scaler"], setting("std", float("inf"))),
                            r"'scaler'.*std must be a finite number, got inf"),
    "scaler std a text": (edit(lambda header: header["scaler"], setting("std", "1.0")),
                          r"'scaler'.*std must be a finite number"),
    "scaler range empty": (edit(lambda header: header["scaler"], setting("high", -1.0)),
                           r"'scaler'.*all values are equal"),
    "description not an object": (lambda header: [header], r"'format' and 'version'"),
    "newer version": (edit(whole, setting("version", 99)), r"'version'.*upgrade portanet"),
}


def saved(tmp_path, dtype=None):
    """The arrays and the description of a small network saved as .npz."""
    with np.load(small_net(dtype).save(tmp_path / "good.npz")) as archive:
        arrays = dict(archive)
    return arrays, json.loads(arrays.pop(HEADER).tobytes())


def write_npz(path, arrays, header):
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    np.savez(path, **arrays, **{HEADER: np.frombuffer(text, np.uint8)})
    return path


@pytest.mark.parametrize("damage", BROKEN_DESCRIPTIONS)
def test_a_broken_description_names_its_field(tmp_path, damage):
    change, field = BROKEN_DESCRIPTIONS[damage]
    arrays, header = saved(tmp_path)
    header = change(header)
    refused(write_npz(tmp_path / "broken.npz", arrays, header), field)


BROKEN_ARRAYS = {
    "weights of strings": (lambda arrays: arrays.update({"0/weights": np.full((4, 6), "a")}),
                           r"'0/weights' holds <U1 values, not numbers"),
    "complex weights": (lambda arrays: arrays.update({"0/bias": np.ones(6, np.complex64)}),
                        r"'0/bias' holds complex64 values"),
    "weights of a wrong shape": (lambda arrays: arrays.update({"0/weights": np.ones((5, 6))}),
                                 r"'layers\[0\]\.weights'.*\(4, 6\), got \(5, 6\)"),
    "missing weights": (lambda arrays: arrays.pop("2.0/bias"),
                        r"\['bias'\] of layer 2\.0 .*'layers\[2\]\.sublayers\[0\]\.weights'"),
    "pickled objects": (lambda arrays: arrays.update({"0/bias": np.array([{}], dtype=object)}),
                        r"entry '0/bias' is not a plain array.*never unpickles"),
}


@pytest.mark.parametrize("damage", BROKEN_ARRAYS)
def test_broken_weight_arrays_are_named(tmp_path, damage):
    change, field = BROKEN_ARRAYS[damage]
    arrays, header = saved(tmp_path)
    change(arrays)
    refused(write_npz(tmp_path / "broken.npz", arrays, header), field)


@pytest.mark.parametrize("text", [b"\xff\xfe{", b'{"format": ', b"[" * 100_000],
                         ids=["not UTF-8", "cut short", "nested too deep"])
def test_a_description_that_is_not_json_is_damaged(tmp_path, text):
    arrays, _ = saved(tmp_path)
    refused(write_npz(tmp_path / "broken.npz", arrays, text), "the network description is damaged")


def random_bytes(path):
    path.write_bytes(np.random.default_rng(0).bytes(300))


OTHER_FILES = {  # each: (file name, how it is made, what the message says)
    "plain .npy array": ("weights.npy", lambda path: np.save(path, np.ones(3)), "no .npz archive"),
    "random bytes": ("net.npz", random_bytes, "no .npz archive"),
    "random bytes, another suffix": ("net.bin", random_bytes, "no .npz archive"),
    "empty file": ("net.npz", lambda path: path.write_bytes(b""), "no .npz archive"),
    "folder": ("net.npz", lambda path: path.mkdir(), "not a readable"),
    "random .safetensors": ("net.safetensors", random_bytes, "not a readable safetensors"),
}


@pytest.mark.parametrize("kind", OTHER_FILES)
def test_files_of_another_kind_are_refused(tmp_path, kind):
    pytest.importorskip("safetensors")
    name, make, says = OTHER_FILES[kind]
    make(tmp_path / name)
    refused(tmp_path / name, says)


# safetensors files made byte by byte, as other programs (torch) write them


def safetensors_bytes(tensors, metadata):
    """A .safetensors file: ``tensors`` maps names to (safetensors dtype, shape, raw bytes)."""
    header, data = {"__metadata__": metadata}, b""
    for name, (code, shape, raw) in tensors.items():
        header[name] = {"dtype": code, "shape": list(shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data


def bfloat16(values):
    """The bytes of ``values`` in bfloat16 (the upper half of each float32, rounded down)."""
    return (np.asarray(values, "<f4").view("<u4") >> 16).astype("<u2").tobytes()


def saved_safetensors(tmp_path, dtype=None):
    """The arrays (NumPy) and the metadata of a small network saved as .safetensors."""
    safetensors = pytest.importorskip("safetensors")
    path = small_net(dtype).save(tmp_path / "good.safetensors")
    with safetensors.safe_open(path, framework="numpy") as archive:
        return {name: archive.get_tensor(name) for name in archive.keys()}, archive.metadata()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("half", ["BF16", "F16"])
def test_half_precision_safetensors_load_in_the_networks_dtype(backend, tmp_path, half, dtype):
    arrays, metadata = saved_safetensors(tmp_path, dtype)
    if half == "BF16":
        tensors = {name: ("BF16", value.shape, bfloat16(value)) for name, value in arrays.items()}
        expected = {name: np.frombuffer(raw, "<u2").astype("<u4") << 16
                    for name, (_, _, raw) in tensors.items()}
        expected = {name: bits.view("<f4").reshape(arrays[name].shape)
                    for name, bits in expected.items()}
    else:
        expected = {name: value.astype("<f2") for name, value in arrays.items()}
        tensors = {name: ("F16", value.shape, value.tobytes()) for name, value in expected.items()}
    path = tmp_path / "half.safetensors"
    path.write_bytes(safetensors_bytes(tensors, metadata))
    loaded = portanet.load(path)
    assert_backend_array(loaded.layers[0].weights, backend, dtype)
    np.testing.assert_array_equal(loaded.layers[0].get_weights()[0], expected["0/weights"])
    np.testing.assert_array_equal(loaded.layers[2].sublayers[0].get_weights()[1],
                                  expected["2.0/bias"])


def test_a_file_torch_wrote_in_bfloat16_loads(backend, tmp_path):
    arrays, metadata = saved_safetensors(tmp_path)
    torch = pytest.importorskip("torch")
    saving = pytest.importorskip("safetensors.torch")
    halves = {name: torch.from_numpy(value).to(torch.bfloat16) for name, value in arrays.items()}
    saving.save_file(halves, tmp_path / "torch.safetensors", metadata=metadata)
    loaded = portanet.load(tmp_path / "torch.safetensors")
    assert_backend_array(loaded.layers[0].bias, backend, "float32")
    np.testing.assert_array_equal(loaded.layers[0].get_weights()[0],
                                  halves["0/weights"].float().numpy())


@pytest.mark.parametrize("damage", ["float8", "data short of the shape"])
def test_broken_safetensors_tensors_are_named(tmp_path, damage):
    arrays, metadata = saved_safetensors(tmp_path)
    tensors = {name: ("F32", value.shape, value.tobytes()) for name, value in arrays.items()}
    code, shape, raw = tensors["0/bias"]
    tensors["0/bias"] = {"float8": ("F8_E4M3", shape, raw[:6]),
                         "data short of the shape": ("F32", (7,), raw)}[damage]
    path = tmp_path / "broken.safetensors"
    path.write_bytes(safetensors_bytes(tensors, metadata))
    refused(path, {"float8": r"'0/bias' is stored as F8_E4M3.*F32",
                   "data short of the shape": "not a readable safetensors"}[damage])


def test_a_broken_safetensors_description_names_its_field(tmp_path):
    arrays, metadata = saved_safetensors(tmp_path)
    header = json.loads(metadata["portanet"])
    header["layers"][0]["config"] = None
    tensors = {name: ("F32", value.shape, value.tobytes()) for name, value in arrays.items()}
    path = tmp_path / "broken.safetensors"
    path.write_bytes(safetensors_bytes(tensors, {**metadata, "portanet": json.dumps(header)}))
    refused(path, r"'layers\[0\]\.config'")
