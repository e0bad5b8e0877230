"""The shape of the package: private names stay in the module that defines them, and the
public import paths that users and the docs rely on keep working."""

import ast
import importlib
import pathlib

import pytest

import portanet

PACKAGE = pathlib.Path(portanet.__file__).parent
pytestmark = pytest.mark.backend_independent


def is_private(name):
    return name.startswith("_") and not name.startswith("__")


def defined_private_names(tree):
    """The underscore names a module defines: functions, classes, methods, module variables
    and attributes it assigns (``self._x = ...``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return {name for name in names if is_private(name)}


def modules():
    return {str(path.relative_to(PACKAGE)): ast.parse(path.read_text())
            for path in sorted(PACKAGE.rglob("*.py"))}


def private_uses_across_modules(trees):
    """``"module:line uses name"`` for each import of an underscore name from a portanet
    module, and each ``x._name`` (x not self or cls) of an underscore name that only other
    modules define."""
    defined = {name: defined_private_names(tree) for name, tree in trees.items()}
    offences = []
    for name, tree in trees.items():
        others = set().union(*(names for other, names in defined.items() if other != name))
        foreign = others - defined[name]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "")
                                                     .startswith("portanet")):
                used = [alias.name for alias in node.names if is_private(alias.name)]
            elif isinstance(node, ast.Attribute) and not (
                    isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                used = [node.attr] if node.attr in foreign else []
            else:
                continue
            offences += [f"{name}:{node.lineno} uses {used_name}" for used_name in used]
    return offences


def test_no_module_uses_another_modules_private_names():
    assert private_uses_across_modules(modules()) == []


def test_a_private_name_used_across_modules_is_found():
    trees = {"one.py": ast.parse("def _helper():\n    pass\n"),
             "two.py": ast.parse("from . import one\none._helper()\n"),
             "three.py": ast.parse("from .one import _helper\n")}
    assert private_uses_across_modules(trees) == ["two.py:2 uses _helper",
                                                  "three.py:1 uses _helper"]


@pytest.mark.parametrize("old, new", [
    ("portanet.datasets", "portanet.data.datasets"),
    ("portanet.preprocessing", "portanet.data.preprocessing"),
    ("portanet.text", "portanet.data.text"),
    ("portanet.distributed", "portanet.training.world"),
])
def test_moved_modules_keep_their_public_import_paths(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)


@pytest.mark.parametrize("old, new, names", [
    ("portanet.optimizers", "portanet.optimizers.base", ["Optimizer"]),
    ("portanet.optimizers", "portanet.optimizers.algorithms", ["SGD", "RMSprop", "Adam", "AdamW"]),
    ("portanet.optimizers", "portanet.optimizers.schedules",
     ["step_decay", "exponential_decay", "cosine_decay"]),
    ("portanet.callbacks", "portanet.callbacks.base", ["Callback", "CallbackList"]),
    ("portanet.callbacks", "portanet.callbacks.monitoring",
     ["EarlyStopping", "ModelCheckpoint", "weights_of", "check_computed", "path_fields", "VALUES"]),
    ("portanet.callbacks", "portanet.callbacks.scheduling", ["LearningRateScheduler"]),
    ("portanet.callbacks", "portanet.callbacks.records", ["CSVLogger", "BackupAndRestore"]),
    ("portanet.data.loaders", "portanet.data.sources",
     ["ArrayDataset", "SampleDataset", "BatchIterable", "is_array_like", "describe", "as_dataset",
      "open_npy", "open_npz"]),
    ("portanet.training.loop", "portanet.training.runner", ["compose"]),
    ("portanet.cli.commands", "portanet.cli.info", ["cmd_info"]),
    ("portanet.cli.commands", "portanet.cli.train", ["cmd_train"]),
    ("portanet.cli.commands", "portanet.cli.saved", ["cmd_evaluate", "cmd_predict", "cmd_export"]),
    ("portanet.cli.commands", "portanet.cli.reading", ["FOLDER", "print_report"]),
])
def test_split_modules_keep_their_public_names(old, new, names):
    old, new = importlib.import_module(old), importlib.import_module(new)
    for name in names:
        assert getattr(old, name) is getattr(new, name), name


def test_public_names_at_the_top_level():
    for name in ("Network", "FCLayer", "ActivationLayer", "load", "export_onnx", "set_backend",
                 "using_backend", "History", "__version__"):
        assert hasattr(portanet, name), name
    from portanet.cli import main  # the console script's entry point

    assert callable(main)
