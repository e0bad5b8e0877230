"""portanet.ImageFolder: a folder of small PNGs written by each test, read lazily with Pillow;
a network trained on it, and the command trained, evaluated and run on it."""

import numpy as np
import pytest
from PIL import Image

import portanet as pn
from portanet.backend import to_numpy
from portanet.cli import main
from portanet.errors import DataError, InputError
from portanet.models import small_cnn

CLASSES = ("circle", "cross", "square")  # sorted, as the folder's classes are
host = pytest.mark.backend_independent  # reads files into NumPy arrays, whatever the backend


def write_folder(root, rgb=False, count=4, size=(8, 8)):
    """``count`` PNGs per class of ``size`` (height, width), grey or ``rgb``, under
    ``root/<class>/``, written in shuffled order; return {path: pixels written (uint8)}."""
    rng = np.random.default_rng(0)
    written = {}
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for index in rng.permutation(count):
            pixels = rng.integers(0, 256, (*size, 3) if rgb else size, dtype=np.uint8)
            pixels[..., :2, :2] = 60 * label  # a mark of the class the network can learn
            path = root / name / f"{index}.png"
            Image.fromarray(pixels).save(path)
            written[path] = pixels
    return written


@host
def test_images_and_labels_in_sorted_order_scaled_to_one_channels_first(tmp_path):
    written = write_folder(tmp_path)
    (tmp_path / "cross" / "notes.txt").write_text("not an image")
    (tmp_path / ".cache").mkdir()  # hidden: not a class
    ds = pn.ImageFolder(tmp_path)
    assert ds.class_names == CLASSES and len(ds) == 12 and ds.image_shape == (1, 8, 8)
    assert ds.paths == tuple(sorted(written))
    np.testing.assert_array_equal(ds.labels, np.repeat([0, 1, 2], 4))
    for i, path in enumerate(ds.paths):
        x, y = ds[i]
        assert x.dtype == np.float32 and x.shape == (1, 8, 8) and y.dtype == np.int64
        assert y == CLASSES.index(path.parent.name)
        np.testing.assert_array_equal(x[0], written[path] / np.float32(255))


@host
def test_rgb_images_are_channels_first(tmp_path):
    written = write_folder(tmp_path, rgb=True, size=(6, 5))
    ds = pn.ImageFolder(tmp_path, color_mode="rgb")
    x, _ = ds[5]
    assert ds.image_shape == (3, 6, 5) and x.shape == (3, 6, 5)
    np.testing.assert_array_equal(x, np.moveaxis(written[ds.paths[5]], -1, 0) / np.float32(255))
    grey, _ = pn.ImageFolder(tmp_path)[5]  # Pillow's luminance of the same pixels
    expected = np.asarray(Image.open(ds.paths[5]).convert("L"), np.float32) / 255
    np.testing.assert_array_equal(grey[0], expected)


@host
def test_rows_equal_the_images_stacked_in_the_order_asked(tmp_path):
    write_folder(tmp_path, rgb=True)
    ds = pn.ImageFolder(tmp_path, color_mode="rgb")
    indices = np.array([11, 0, 5, 5, -1])
    x, y = ds.rows(indices)
    assert x.shape == (5, 3, 8, 8) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(x, np.stack([ds[int(i)][0] for i in indices]))
    np.testing.assert_array_equal(y, [2, 0, 1, 1, 2])
    assert ds.rows(np.array([], dtype=np.int64))[0].shape == (0, 3, 8, 8)
    with pytest.raises(InputError, match="indices must lie in"):
        ds.rows(np.array([12]))
    with pytest.raises(InputError, match="1-D array of ints"):
        ds.rows(np.array([0.5]))
    with pytest.raises(IndexError, match="image index 12 is out of range"):
        ds[12]


@host
def test_image_size_resizes_bilinear(tmp_path):
    write_folder(tmp_path, size=(8, 8))
    ds = pn.ImageFolder(tmp_path, image_size=(4, 6))
    x, _ = ds[3]
    assert ds.image_shape == (1, 4, 6) and x.shape == (1, 4, 6)
    expected = Image.open(ds.paths[3]).convert("L").resize((6, 4), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(x[0], np.asarray(expected, np.float32) / 255)


@host
def test_class_names_give_the_labels_order(tmp_path):
    write_folder(tmp_path)
    order = ["square", "circle", "cross"]
    ds = pn.ImageFolder(tmp_path, class_names=order)
    assert ds.class_names == tuple(order)
    assert [order[label] for label in ds.labels] == [path.parent.name for path in ds.paths]
    assert ds.labels[0] == 0 and ds.paths[0].parent.name == "square"
    with pytest.raises(InputError, match=r"the sub-folders are \['circle', 'cross', 'square'\]"):
        pn.ImageFolder(tmp_path, class_names=["circle", "cross"])


@host
def test_a_wrong_size_image_names_the_file_the_sizes_and_the_fix(tmp_path):
    write_folder(tmp_path)
    odd = tmp_path / "cross" / "odd.png"
    Image.fromarray(np.zeros((8, 9), np.uint8)).save(odd)
    ds = pn.ImageFolder(tmp_path)  # listing reads no pixels
    index = ds.paths.index(odd)
    message = (f"{odd} has size (8, 9) (height, width), not (8, 8) as the first image "
               f"{ds.paths[0]}: give ImageFolder(..., image_size=(8, 8))")
    for read in (lambda: ds[index], lambda: ds.rows(np.arange(len(ds)))):
        with pytest.raises(DataError) as raised:
            read()
        assert message in str(raised.value)
    assert pn.ImageFolder(tmp_path, image_size=(8, 8))[index][0].shape == (1, 8, 8)


@host
@pytest.mark.parametrize("content", [b"not a png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_a_corrupt_image_names_the_file(tmp_path, content):
    write_folder(tmp_path)
    bad = tmp_path / "circle" / "bad.png"
    bad.write_bytes(content)
    ds = pn.ImageFolder(tmp_path)
    with pytest.raises(DataError, match=f"cannot read the image {bad}: .*replace or remove"):
        ds.rows(np.arange(len(ds)))
    assert ds[1][0].shape == (1, 8, 8)  # the others still read
    bad.rename(tmp_path / "a_first.png")  # not in a class folder: ignored
    (tmp_path / "circle" / "0.png").write_bytes(content)  # the first image: read at creation
    with pytest.raises(DataError, match="cannot read the image .*0.png"):
        pn.ImageFolder(tmp_path)


@host
def test_missing_and_empty_folders_say_so(tmp_path):
    with pytest.raises(DataError, match=f"no folder of images at {tmp_path / 'nope'}: it does "
                                        "not exist"):
        pn.ImageFolder(tmp_path / "nope")
    (tmp_path / "file.png").touch()
    with pytest.raises(DataError, match="it is a file"):
        pn.ImageFolder(tmp_path / "file.png")
    with pytest.raises(DataError, match="has no sub-folders: put the images of each class"):
        pn.ImageFolder(tmp_path)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "readme.md").touch()
    with pytest.raises(DataError, match=f"the class folder {tmp_path / 'cat'} holds no images"):
        pn.ImageFolder(tmp_path)


@host
def test_extensions_are_recognised_in_any_case_and_in_nested_folders(tmp_path):
    write_folder(tmp_path, count=1)
    image = Image.fromarray(np.zeros((8, 8), np.uint8))
    (tmp_path / "cross" / "deeper").mkdir()
    for name in ("a.JPG", "b.jpeg", "c.bmp", "d.GIF", "deeper/e.Png"):
        image.save(tmp_path / "cross" / name)
    ds = pn.ImageFolder(tmp_path)
    assert [path.name for path in ds.paths if path.parent.name != "circle"][:6] == [
        "0.png", "a.JPG", "b.jpeg", "c.bmp", "d.GIF", "e.Png"]
    assert ds.rows(np.arange(len(ds)))[0].shape == (8, 1, 8, 8)


def test_a_network_learns_the_folders_classes(backend, tmp_path):
    write_folder(tmp_path, count=8)
    ds = pn.ImageFolder(tmp_path)
    x, y = ds.rows(np.arange(len(ds)))
    net = small_cnn(ds.image_shape, len(ds.class_names))
    history = net.fit(x, y, epochs=30, batch_size=8, optimizer="adam", learning_rate=3e-3,
                      shuffle=True, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    np.testing.assert_array_equal(to_numpy(net.predict_classes(x)), y)


def test_a_network_trains_on_the_folder_itself_as_on_its_images(backend, tmp_path):
    write_folder(tmp_path, count=4)
    ds = pn.ImageFolder(tmp_path)
    x, y = ds.rows(np.arange(len(ds)))
    losses, outputs = [], []
    for data in ((x, y), (ds,)):  # in memory, then read batch by batch from the files
        pn.set_seed(0)
        net = small_cnn(ds.image_shape, len(ds.class_names))
        history = net.fit(*data, epochs=2, batch_size=4, shuffle=True, verbose=0)
        losses.append(history.history["loss"])
        outputs.append(to_numpy(net.predict(x)))
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(to_numpy(net.predict_classes(ds)),
                                  to_numpy(net.predict_classes(x)))
    assert net.metadata["class_names"] == list(ds.class_names)  # kept with the network
    net.save(tmp_path / "net.npz")
    assert pn.load(tmp_path / "net.npz").metadata["class_names"] == list(ds.class_names)


def test_the_command_trains_evaluates_and_predicts_on_a_folder(backend, tmp_path, capsys):
    folder, model = tmp_path / "shapes", tmp_path / "shapes.npz"
    write_folder(folder, rgb=True, count=8)
    assert main(["train", "--dataset", f"folder:{folder}", "--color-mode", "rgb", "--model",
                 "cnn", "--epochs", "1", "--batch-size", "8", "--backend", backend.name,
                 "--save", str(model), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"dataset folder:{folder}: 18 training and 6 test images of 3x8x8" in out
    report = out.split("test set (6 images")[1]
    assert all(name in report for name in CLASSES)
    accuracy = float(report.split("accuracy")[-1].split()[0])
    net = pn.load(model)
    assert net.metadata["class_names"] == list(CLASSES)
    assert net.metadata["image_shape"] == [3, 8, 8]

    assert main(["evaluate", "--model", str(model)]) == 0  # the folder it was trained on
    out = capsys.readouterr().out
    assert "6 test images" in out and f"{accuracy:9.3f}" in out
    assert all(name in out for name in CLASSES)

    ds = pn.ImageFolder(folder, color_mode="rgb")
    np.save(tmp_path / "images.npy", ds.rows(np.arange(3))[0])
    assert main(["predict", "--model", str(model), str(tmp_path / "images.npy")]) == 0
    expected = to_numpy(net.predict_classes(ds.rows(np.arange(3))[0]))
    assert capsys.readouterr().out.splitlines() == [
        f"{i}\t{label}\t{CLASSES[label]}" for i, label in enumerate(expected)]


def test_the_command_resizes_a_folder_of_mixed_sizes_with_image_size(backend, tmp_path, capsys):
    folder, model = tmp_path / "shapes", tmp_path / "shapes.npz"
    write_folder(folder)
    odd = folder / "square" / "odd.png"
    Image.fromarray(np.zeros((12, 10), np.uint8)).save(odd)
    argv = ["train", "--dataset", f"folder:{folder}", "--epochs", "1", "--quiet", "--backend",
            backend.name]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"portanet: error: {odd} has size (12, 10)") and "--image-size 8x8" in err
    assert main([*argv, "--image-size", "6x6", "--save", str(model)]) == 0
    assert "images of 1x6x6" in capsys.readouterr().out
    assert pn.load(model).metadata["image_shape"] == [1, 6, 6]
    assert main(["evaluate", "--model", str(model)]) == 0  # read at the network's size again
    assert "3 test images of 1x6x6" in capsys.readouterr().out
