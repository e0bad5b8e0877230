"""Character-level text data (portanet.text.CharText, load_text) and sampling from a network
(sample_next, generate)."""

import math
import socket

import numpy as np
import pytest

import portanet
from portanet.backend import namespace, to_numpy
from portanet.text import CharText, generate, load_text, sample_next

TEXT = "the quick brown fox jumps over the lazy dog. " * 20  # 900 characters


# -- the text set --------------------------------------------------------------------------------
def test_vocabulary_is_the_sorted_unique_characters_and_ids_round_trip():
    data = CharText("hello, world")
    assert data.vocabulary == " ,dehlorw"
    ids = data.encode("world hello")
    assert ids.dtype == np.int64
    assert ids.tolist() == [data.vocabulary.index(c) for c in "world hello"]
    assert data.decode(ids) == "world hello"
    assert data.decode(ids.tolist()) == "world hello"
    assert CharText(data.vocabulary).vocabulary == data.vocabulary  # rebuilt from a saved one


def test_decode_takes_backend_arrays(backend):
    data = CharText("abc")
    ids = backend.xp.asarray([2, 0, 1], device=backend.device)
    assert data.decode(ids) == "cab"


def test_unknown_characters_are_named():
    data = CharText("abc")
    with pytest.raises(portanet.InputError, match=r"'x', 'é'"):
        data.encode("abxéa")


def test_bad_ids_and_arguments_are_input_errors():
    data = CharText("abc")
    with pytest.raises(portanet.InputError, match=r"\[3, -1\]"):
        data.decode([0, 3, -1])
    with pytest.raises(portanet.InputError, match="integer ids"):
        data.decode([0.0, 1.0])
    with pytest.raises(portanet.InputError, match="non-empty str"):
        CharText("")
    for fraction in (1.0, -0.1, "0.1"):
        with pytest.raises(portanet.InputError, match=r"validation .* a number in \[0, 1\)"):
            CharText(TEXT, validation=fraction)
    with pytest.raises(portanet.InputError, match="split must be one of"):
        CharText(TEXT).batch(2, 4, split="test")
    with pytest.raises(portanet.InputError, match="batch_size must be an integer >= 1"):
        CharText(TEXT).batch(0, 4)


@pytest.mark.parametrize("fraction, validation_size", [(0.1, 90), (0.25, 225), (0.0, 0)])
def test_validation_is_the_last_fraction_of_the_text(fraction, validation_size):
    data = CharText(TEXT, validation=fraction)
    train, validation = data.ids["train"], data.ids["validation"]
    assert (len(train), len(validation)) == (len(TEXT) - validation_size, validation_size)
    assert data.decode(train) + data.decode(validation) == TEXT


def test_batch_windows_come_from_the_split_and_targets_are_shifted_by_one():
    data = CharText(TEXT[:-7] + "XYZ0123")  # the validation part holds characters train lacks
    train_text = data.decode(data.ids["train"])
    x, y = data.batch(16, 8)
    assert x.shape == y.shape == (16, 8) and x.dtype == y.dtype == np.int64
    assert (x[:, 1:] == y[:, :-1]).all()
    for row_x, row_y in zip(x, y):
        assert data.decode(row_x) + data.decode(row_y[-1:]) in train_text
    x, y = data.batch(4, 8, split="validation")
    validation_text = data.decode(data.ids["validation"])
    for row_x, row_y in zip(x, y):
        assert data.decode(row_x) + data.decode(row_y[-1:]) in validation_text


def test_windows_cut_the_split_in_order():
    data = CharText(TEXT)
    train = data.ids["train"]
    x, y = data.windows(10)
    assert x.shape == y.shape == ((len(train) - 10 + 9) // 10, 10)
    for i, (row_x, row_y) in enumerate(zip(x, y)):
        assert (row_x == train[10 * i:10 * i + 10]).all()
        assert (row_y == train[10 * i + 1:10 * i + 11]).all()
    x, _ = data.windows(10, stride=3)
    assert x.shape == ((len(train) - 10 + 2) // 3, 10)
    assert (x[5] == train[15:25]).all()


def test_batches_follow_portanets_seed():
    data = CharText(TEXT)
    portanet.set_seed(3)
    first, _ = data.batch(8, 16)
    portanet.set_seed(3)
    again, _ = data.batch(8, 16)
    portanet.set_seed(4)
    other, _ = data.batch(8, 16)
    assert (first == again).all()
    assert not (first == other).all()


def test_a_text_too_short_for_the_context_is_a_data_error():
    data = CharText("abcdefghij", validation=0.2)  # 8 train, 2 validation characters
    assert data.batch(1, 7)[0].shape == (1, 7)
    with pytest.raises(portanet.DataError, match="train part holds 8 characters.*at least 9"):
        data.batch(1, 8)
    with pytest.raises(portanet.DataError, match="validation part holds 2 characters"):
        data.windows(2, split="validation")


# -- reading text ----------------------------------------------------------------------------------
def test_the_default_text_is_the_standard_library_read_offline_and_always_the_same(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("load_text() tried to use the network")

    monkeypatch.setattr(socket, "socket", no_network)
    text = load_text()
    assert len(text) == 1_000_000
    assert "def " in text and "import " in text
    assert load_text() == text
    assert load_text(limit=500) == text[:500]
    data = CharText(text)
    assert data.decode(data.encode(text[:2000])) == text[:2000]


def test_a_file_is_read_as_utf8(tmp_path):
    path = tmp_path / "poem.txt"
    path.write_text("Grüße, 世界\n" * 3, encoding="utf-8")
    assert load_text(path) == "Grüße, 世界\n" * 3
    assert load_text(str(path), limit=5) == "Grüße"


@pytest.mark.parametrize("content, message", [
    (None, "cannot read .*missing.txt"),
    (b"", "is empty"),
    (b"caf\xe9", "not UTF-8"),
])
def test_unusable_files_are_data_errors(tmp_path, content, message):
    path = tmp_path / "missing.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(portanet.DataError, match=message):
        load_text(path)


def test_a_folder_is_a_data_error_and_limits_are_checked(tmp_path):
    with pytest.raises(portanet.DataError, match="cannot read"):
        load_text(tmp_path)
    with pytest.raises(portanet.InputError, match="limit must be an integer >= 1"):
        load_text(limit=0)


# -- sampling --------------------------------------------------------------------------------------
LOGITS = [1.0, 2.5, 0.0, -1.0, 2.0]


def softmax(values):
    e = np.exp(np.asarray(values, dtype=np.float64) - np.max(values))
    return e / e.sum()


def frequencies(ids, size):
    return np.bincount(to_numpy(ids), minlength=size) / len(ids)


def assert_frequencies_match(ids, probabilities):
    """Each id's frequency within 5 standard deviations of its probability."""
    n = len(ids)
    bound = 5 * np.sqrt(probabilities * (1 - probabilities) / n) + 1e-12
    assert (np.abs(frequencies(ids, len(probabilities)) - probabilities) <= bound).all()


@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
def test_draws_follow_the_softmax_of_the_logits(backend, temperature):
    rows = backend.asarray(np.tile(LOGITS, (20000, 1)), "float32")
    ids = sample_next(rows, temperature=temperature)
    assert ids.shape == (20000,) and ids.dtype == np.int64
    assert_frequencies_match(ids, softmax(np.asarray(LOGITS) / temperature))


def test_one_row_of_logits_gives_an_int(backend):
    drawn = sample_next(backend.asarray(LOGITS, "float64"))
    assert isinstance(drawn, int) and 0 <= drawn < len(LOGITS)


def test_top_k_keeps_the_k_largest_logits(backend):
    rows = backend.asarray(np.tile(LOGITS, (20000, 1)), "float64")
    ids = sample_next(rows, top_k=2)
    expected = softmax(LOGITS) * np.isin(np.arange(5), [1, 4])
    assert_frequencies_match(ids, expected / expected.sum())
    assert (to_numpy(sample_next(rows[:50, ...], top_k=1)) == 1).all()


def test_a_small_temperature_picks_the_largest_logit(backend):
    rows = backend.asarray(np.tile(LOGITS, (2000, 1)), "float32")
    assert (to_numpy(sample_next(rows, temperature=1e-3)) == 1).all()


def test_huge_logits_do_not_overflow():
    ids = sample_next(np.tile([1000.0, 1000.0, -1000.0], (4000, 1)))
    assert_frequencies_match(ids, np.array([0.5, 0.5, 0.0]))


def test_draws_follow_portanets_seed():
    rows = np.tile(LOGITS, (100, 1))
    portanet.set_seed(9)
    first = sample_next(rows)
    portanet.set_seed(9)
    assert (sample_next(rows) == first).all()


@pytest.mark.parametrize("arguments, message", [
    ({"temperature": 0.0}, "temperature must be a positive number"),
    ({"temperature": -1.0}, "temperature must be a positive number"),
    ({"temperature": math.nan}, "temperature must be a positive number"),
    ({"top_k": 0}, "top_k must be an integer >= 1"),
    ({"top_k": 2.0}, "top_k must be an integer >= 1"),
    ({"top_k": 6}, "top_k must be between 1 and the vocabulary size 5"),
])
def test_bad_sampling_arguments_are_input_errors(arguments, message):
    with pytest.raises(portanet.InputError, match=message):
        sample_next(LOGITS, **arguments)


def test_bad_logits_are_named():
    with pytest.raises(portanet.ShapeError, match=r"\(V,\) or \(N, V\)"):
        sample_next(np.zeros((1, 2, 3)))
    with pytest.raises(portanet.InputError, match="NaN or infinite"):
        sample_next([0.0, math.nan])


# -- generating with a network ---------------------------------------------------------------------
VOCABULARY = 6


class Bigram(portanet.Layer):
    """A stand-in language model: the logits at each position are a row of a fixed table chosen
    by the id there, so (N, T) ids give (N, T, V) logits."""

    def __init__(self, table):
        super().__init__()
        self.table = portanet.get_backend().asarray(table, "float64")

    def forward(self, x, training=False):
        xp = namespace(x)
        ids = xp.reshape(xp.astype(x, xp.int64), (-1,))
        logits = xp.take(self.table, ids, axis=0)
        return xp.reshape(logits, (x.shape[0], x.shape[1], self.table.shape[1]))


def successor_table(strength):
    """Logits that favour id (i + 1) % V after id i, by ``strength`` nats over the others."""
    return strength * np.roll(np.eye(VOCABULARY), 1, axis=1)


class Recorder:
    """Passes predict on to a network and keeps the inputs it was given."""

    def __init__(self, network):
        self.network, self.inputs = network, []

    def predict(self, x):
        self.inputs.append(np.array(x))
        return self.network.predict(x)


def test_generate_appends_steps_and_gives_the_network_the_last_context_ids(backend):
    recorder = Recorder(portanet.Network([Bigram(successor_table(3.0))]))
    ids = generate(recorder, [4, 2], steps=5, context=3)
    assert ids.dtype == np.int64 and ids.shape == (7,)
    assert ids[:2].tolist() == [4, 2] and ((0 <= ids) & (ids < VOCABULARY)).all()
    assert [x.shape for x in recorder.inputs] == [(1, 3)] * 5  # one shape: one compilation
    for step, x in enumerate(recorder.inputs):  # the last ids, padded on the right with 0
        last = ids[max(0, step + 2 - 3):step + 2].tolist()
        assert x.tolist() == [last + [0] * (3 - len(last))]


@pytest.mark.parametrize("arguments", [{"top_k": 1}, {"temperature": 1e-3}])
def test_greedy_generation_follows_the_most_likely_id(backend, arguments):
    network = portanet.Network([Bigram(successor_table(1.0))])
    ids = generate(network, [3], steps=8, context=4, **arguments)
    assert ids.tolist() == [(3 + i) % VOCABULARY for i in range(9)]


def test_generation_follows_portanets_seed(backend):
    network = portanet.Network([Bigram(successor_table(0.5))])
    portanet.set_seed(11)
    first = generate(network, [0], steps=30, context=5)
    portanet.set_seed(11)
    again = generate(network, [0], steps=30, context=5)
    assert (first == again).all()
    assert first.tolist() != [i % VOCABULARY for i in range(31)]  # not greedy at temperature 1


def test_generate_checks_its_arguments_and_the_networks_output():
    network = portanet.Network([Bigram(successor_table(1.0))])
    with pytest.raises(portanet.InputError, match="non-empty 1-D sequence of integer ids"):
        generate(network, [], steps=1, context=2)
    with pytest.raises(portanet.InputError, match="non-empty 1-D sequence of integer ids"):
        generate(network, [0.5], steps=1, context=2)
    with pytest.raises(portanet.InputError, match="steps must be an integer >= 0"):
        generate(network, [0], steps=-1, context=2)
    with pytest.raises(portanet.InputError, match="context must be an integer >= 1"):
        generate(network, [0], steps=1, context=0)
    flat = portanet.Network([portanet.FCLayer(1, VOCABULARY)])
    with pytest.raises(portanet.ShapeError, match=r"\(1, T, V\) logits.*gave \(1, 6\)"):
        generate(flat, [0], steps=1, context=1)
