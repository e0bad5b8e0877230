"""Training states: a network and how its training stood, in one file, to resume from.

A training state is a network file (:mod:`~portanet.saving.format`: the same description and
weights, as ``.npz`` or ``.safetensors``, nothing pickled) whose format is
"portanet-training-state" and whose description has a field "training": the epoch reached,
the optimizer (its type, settings, step count, base learning rate and, under
mixed_float16, its loss scale) and the state of
portanet's host random generator (every shuffle, dropout mask and augmentation draw comes from
it). The optimizer's state arrays are stored per parameter, named
``optimizer/<layer key>/<weight name>/<index>``, whatever the layout of the steps that made
them (flat buffers for eager steps, one array per parameter for compiled ones), so a state
saved by one kind of step, or on one backend, resumes on any other.
"""

from __future__ import annotations

from pathlib import Path

from .._checks import integer
from ..backend import dtype_name, get_backend, rng, to_numpy
from ..errors import InputError, ModelFileError
from ..optimizers import CLASSES, Optimizer
from .format import build, describe, keyed, model_path, read_file, weights, write
from .schema import REWRITE, TRAINING_FORMAT, check_training

WHAT = "the training state"
OPTIMIZER = "optimizer/"  # the prefix of the optimizer's arrays


def state_path(path) -> Path:
    """``path`` as a Path where a training state can be written; a file already there must be
    a readable training state (checked now, before long work)."""
    path = model_path(path, WHAT)
    if path.exists():
        TrainingState(path)
    return path


def save_training(path, network, optimizer, epoch) -> Path:
    """Write ``network``, ``optimizer``'s state and ``epoch`` (the last epoch trained) with
    portanet's random generator's state to ``path`` (.npz or .safetensors) atomically; return
    the path. WriteError (the file before kept) where the disk refuses the write."""
    path = model_path(path, WHAT)
    epoch = integer("epoch", epoch, low=0)
    if not isinstance(optimizer, Optimizer):
        raise InputError(f"optimizer must be the portanet Optimizer that trains the network, "
                         f"got {optimizer!r}")
    keys = {id(layer): key for key, layer in keyed(network.layers)}
    arrays, places = weights(network), []
    for (layer, name), values in optimizer.parameter_states():
        if id(layer) not in keys:
            raise InputError(f"{optimizer!r} holds the state of another network's parameters: "
                             "save the network together with the optimizer that trains it")
        places.append(f"{keys[id(layer)]}/{name}")
        arrays.update({f"{OPTIMIZER}{places[-1]}/{index}": to_numpy(value)
                       for index, value in enumerate(values)})
    training = {"epoch": epoch, "random": rng().bit_generator.state, "optimizer": {
        "type": type(optimizer).__name__, "config": optimizer.config(),
        "schedule": optimizer.schedule is not None, "iterations": optimizer.iterations,
        "learning_rate": optimizer.learning_rate,
        "current_learning_rate": optimizer.current_learning_rate, "state": places,
        "loss_scale": None if optimizer.loss_scale is None
        else to_numpy(optimizer.loss_scale).tolist()}}
    return write(path, {**describe(network), "format": TRAINING_FORMAT, "training": training},
                 arrays, WHAT)


def resume(path, network, optimizer):
    """Restore ``network``, ``optimizer`` and the random generator from the training state at
    ``path`` (see :meth:`TrainingState.restore`) and return its epoch; None where there is no
    file yet (InputError where none could be written there)."""
    path = model_path(path, WHAT)
    return TrainingState(path).restore(network, optimizer) if path.exists() else None


class TrainingState:
    """A training state file, read and checked: :meth:`layers` builds its network's layers,
    :meth:`optimizer` a new optimizer, :meth:`restore` puts everything in place."""

    def __init__(self, path):
        self.path = path
        self.header, arrays = read_file(path, TRAINING_FORMAT)
        self.training = check_training(path, self.header.get("training"))
        self.saved = self.training["optimizer"]
        self.arrays = {k: v for k, v in arrays.items() if not k.startswith(OPTIMIZER)}
        self.moments = {k[len(OPTIMIZER):]: v for k, v in arrays.items()
                        if k.startswith(OPTIMIZER)}
        self._layers = None

    def layers(self):
        """The saved network's layers (built once) and its input scaler."""
        if self._layers is None:
            self._layers = build(self.path, self.header, self.arrays)
        return self._layers

    def optimizer(self) -> Optimizer:
        """A new optimizer with the saved type and settings (its state comes with
        :meth:`restore`)."""
        kind = self.saved["type"]
        if kind not in CLASSES:
            raise InputError(f"{self.path} holds the state of a {kind} optimizer, which portanet "
                             "cannot make: pass the optimizer, made as it was for training "
                             "(load_training(path, optimizer=...))")
        if self.saved["schedule"]:
            raise InputError(f"the {kind} optimizer of {self.path} followed a schedule, which is "
                             "a function and not saved: pass the optimizer made as it was for "
                             f"training, e.g. load_training(path, optimizer={kind}(schedule="
                             "...))")
        try:
            return CLASSES[kind](**self.saved["config"])
        except (InputError, TypeError) as exc:
            raise ModelFileError(f"{self.path}: field 'training.optimizer.config' does not make "
                                 f"a {kind}: {exc}; {REWRITE}") from None

    def restore(self, network, optimizer) -> int:
        """Give ``network`` the saved weights, ``optimizer`` the saved state, step count and
        rate, and portanet's random generator the saved state; return the saved epoch.
        InputError where ``network``'s layers or ``optimizer``'s kind differ from the file's."""
        mine = describe(network)
        if (mine["layers"], mine["dtype"]) != (self.header["layers"], self.header["dtype"]):
            raise InputError(f"{self.path} holds the training state of another network (its "
                             "layers, their settings or the dtype differ from this network's): "
                             "resume with the network it was saved from, or start afresh "
                             "without the file")
        layers, _ = self.layers()
        saved = dict(keyed(layers))
        by_key = dict(keyed(network.layers))
        for key, layer in by_key.items():
            if layer is not saved[key]:
                layer.set_weights(saved[key].get_weights())
        self._restore_optimizer(optimizer, by_key)
        try:
            rng().bit_generator.state = self.training["random"]
        except (TypeError, ValueError, KeyError) as exc:
            raise ModelFileError(f"{self.path}: field 'training.random' is no state of "
                                 f"portanet's random generator ({exc!r}); {REWRITE}") from None
        return self.training["epoch"]

    def _restore_optimizer(self, optimizer, by_key):
        saved, kind = self.saved, type(optimizer).__name__
        fix = (f"resume with the optimizer training used ({saved['type']} with the settings "
               f"{saved['config']}{', and its schedule' if saved['schedule'] else ''})")
        if saved["type"] != kind:
            raise InputError(f"{self.path} holds the state of an optimizer of type "
                             f"{saved['type']}, not {kind}: {fix}")
        config = optimizer.config()
        differ = sorted(name for name in {*config, *saved["config"]} if name != "learning_rate"
                        and config.get(name) != saved["config"].get(name))
        if differ or saved["schedule"] != (optimizer.schedule is not None):
            what = f"the settings {differ}" if differ else "the schedule"
            raise InputError(f"{optimizer!r} differs from the optimizer of {self.path} in "
                             f"{what}: {fix}")
        backend, states = get_backend(), []
        for place in saved["state"]:
            key, name = place.rsplit("/", 1)
            names = [f"{place}/{index}" for index in range(optimizer.state_buffers)]
            layer = by_key.get(key)
            param = getattr(layer, name) if name in getattr(layer, "params", ()) else None
            if param is None or any(entry not in self.moments
                                    or self.moments[entry].shape != tuple(param.shape)
                                    for entry in names):
                raise ModelFileError(f"{self.path}: the optimizer's state for {place!r} (field "
                                     f"'training.optimizer.state') is missing or not of its "
                                     f"parameter's shape; {REWRITE}")
            states.append(((layer, name), tuple(
                backend.asarray(self.moments[entry], dtype_name(param)) for entry in names)))
        optimizer.restore(saved["iterations"], saved["learning_rate"], states)
        scale = saved.get("loss_scale")  # mixed_float16's (see portanet.precision.LossScale)
        optimizer.loss_scale = None if scale is None else backend.asarray(scale, "float32")
