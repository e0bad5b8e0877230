"""The examples of docs/data.md run, in order, in one folder (the first writes the files the
others read), each in a namespace of its own as a reader would paste it, on the backend under
test. An example that imports torch runs where torch is installed."""

import importlib.util
import re
import threading
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "data.md"


def examples():
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)


def test_the_page_has_its_examples():
    sections = re.findall(r"^## (.+)$", PAGE.read_text(), re.M)
    assert sections == ["Data sets", "The Loader", "What is in memory when",
                        "Errors and stopping", "Augmentation", "Checkpoint and resume"]
    assert len(examples()) == 8


def test_the_examples_run(backend, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    has_torch = importlib.util.find_spec("torch") is not None
    ran = 0
    for number, example in enumerate(examples(), 1):
        if "import torch" in example and not has_torch:
            continue
        exec(compile(example, f"docs/data.md, example {number}", "exec"), {})
        ran += 1
    assert ran == len(examples()) - (0 if has_torch else 1)
    out = capsys.readouterr().out
    assert "reading the failing set failed: OSError: disk went away" in out
    # the data files of the first example; the resume example's backup is deleted at the end
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "data.npz", "state.npz", "x.npy", "y.npy"]
    assert not [t for t in threading.enumerate() if t.name == "portanet-prefetch"]


def test_training_md_keeps_no_copy_of_the_moved_sections():
    training = (PAGE.parent / "training.md").read_text()
    assert "data.md#augmentation" in training and "data.md#checkpoint-and-resume" in training
    assert "BackupAndRestore(\"backup.npz\")" not in training
    assert "RandomCrop(padding=4)" not in training


if __name__ == "__main__":
    pytest.main([__file__])
