"""The tiny causal transformer of test_blocks against the same model built from ``torch.nn``
modules (nn.Embedding, a positional parameter, nn.LayerNorm, nn.MultiheadAttention,
nn.GELU, nn.Linear) with portanet's weights: logits, loss, every parameter gradient and one
Adam step with gradient clipping agree in float64 (on the torch backend). And examples/charlm.py's
model on NumPy trains as its torch.nn twin (benchmarks/torch_models.py) does: 50 steps in float32
give the same losses (on the numpy and torch test runs, where torch is installed)."""

import sys
from pathlib import Path

import numpy as np
import pytest
from test_blocks import transformer

import portanet
from portanet.backend import to_numpy
from portanet.models import causal_transformer
from portanet.optimizers import Adam
from portanet.text import CharText, load_text
from portanet.training.step import TrainStep, parameter_slots

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from torch_models import torch_trainer, torch_transformer, transformer_weights  # noqa: E402

VOCABULARY, DIM, HEADS, CONTEXT = 11, 8, 2, 6


@pytest.fixture
def torch(backend):
    if backend.name != "torch":
        pytest.skip("compares with PyTorch modules: runs on the torch backend")
    return pytest.importorskip("torch")


def assert_close(actual, expected, what):
    """Equal to 1e-10 relative, the scale being the largest magnitude of ``expected``."""
    actual, expected = to_numpy(actual), np.asarray(expected)
    assert actual.shape == expected.shape, what
    scale = np.max(np.abs(expected))
    assert scale > 0, what
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-10 * scale, err_msg=what)


def portanet_model():
    """The transformer with random values in every parameter (biases, gains: not the
    initial zeros and ones)."""
    portanet.set_seed(4)
    net = transformer(VOCABULARY, DIM, HEADS, CONTEXT)
    rng = np.random.default_rng(8)
    for layer, name in parameter_slots(net.layers):
        value = getattr(layer, name)
        setattr(layer, name, portanet.get_backend().asarray(
            to_numpy(value) + 0.3 * rng.normal(size=tuple(value.shape)), "float64"))
    return net


def torch_model(torch, net):
    """The same network from torch.nn modules, each holding a copy of portanet's weights
    (Linear keeps ``(out, in)``: the transpose of Dense's ``(in, out)``; MultiheadAttention's
    ``in_proj_weight`` stacks the query, key and value rows: the transpose of the fused
    ``qkv_weights``). Returns ``(forward, pairs)``: the forward function of ids and the
    ``(portanet (layer, name), torch parameter, transposed)`` of every parameter."""
    nn = torch.nn
    embedding, positions, *blocks, mlp, final_norm, head = net.layers
    pairs = []

    def tensor(layer, name, transposed=False):
        value = torch.tensor(to_numpy(getattr(layer, name)), dtype=torch.float64)
        parameter = nn.Parameter(value.T.clone() if transposed else value)
        pairs.append(((layer, name), parameter, transposed))
        return parameter

    def layer_norm(layer):
        module = nn.LayerNorm(DIM, eps=layer.epsilon, dtype=torch.float64)
        module.weight, module.bias = tensor(layer, "gamma"), tensor(layer, "beta")
        return module

    def linear(layer):
        module = nn.Linear(layer.input_size, layer.output_size, dtype=torch.float64)
        module.weight, module.bias = tensor(layer, "weights", True), tensor(layer, "bias")
        return module

    def attention(layer):
        module = nn.MultiheadAttention(DIM, HEADS, batch_first=True, dtype=torch.float64)
        module.in_proj_weight = tensor(layer, "qkv_weights", True)
        module.in_proj_bias = tensor(layer, "qkv_bias")
        module.out_proj.weight = tensor(layer, "out_weights", True)
        module.out_proj.bias = tensor(layer, "out_bias")
        return module

    table = nn.Embedding(VOCABULARY, DIM, dtype=torch.float64)
    table.weight = tensor(embedding, "weights")
    position_table = tensor(positions, "weights")
    attentions = [(layer_norm(norm), attention(layer))
                  for norm, layer in (block.block.sublayers for block in blocks)]
    mlp_norm, first, activation, second = mlp.block.sublayers
    assert activation.activation.__name__ == "gelu"
    feed_forward = nn.Sequential(layer_norm(mlp_norm), linear(first),
                                 nn.GELU(approximate="tanh"), linear(second))
    final = nn.Sequential(layer_norm(final_norm), linear(head))

    def forward(ids):
        t = ids.shape[1]
        x = table(ids) + position_table[:t]
        later = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)  # True: masked
        for norm, attend in attentions:
            h = norm(x)
            x = x + attend(h, h, h, attn_mask=later, need_weights=False)[0]
        x = x + feed_forward(x)
        return final(x)

    return forward, pairs


def data(torch, samples=4, t=5):
    """Random ids and targets, ``t`` shorter than the positional table (its last rows get
    zero gradients)."""
    rng = np.random.default_rng(3)
    ids = rng.integers(0, VOCABULARY, size=(samples, t))
    ids[0, :3] = 2  # repeated ids in one sequence
    targets = rng.integers(0, VOCABULARY, size=(samples, t))
    backend = portanet.get_backend()
    return ((backend.asarray(ids, "int64"), backend.asarray(targets, "int64")),
            (torch.tensor(ids), torch.tensor(targets)))


def gradients(net, optimizer, x, y):
    """The loss of one training step; its gradients put on the layers (``layer.grads``), where
    ``Optimizer.step`` takes them."""
    step = TrainStep(net, optimizer)
    grads, _, sums = step.gradients(step.layout.gather(), [], (x, y), None, [])
    for (layer, name), grad in zip(step.layout.slots, step.layout.split(grads)):
        layer.grads[name] = grad
    return float(sums) / x.shape[0]


def torch_gradients(torch, forward, pairs, ids, targets):
    logits = forward(ids)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCABULARY),
                                             targets.reshape(-1))
    for _, parameter, _ in pairs:
        parameter.grad = None
    loss.backward()
    return logits, loss


def test_transformer_forward_and_gradients_equal_pytorch(torch):
    net = portanet_model()
    forward, pairs = torch_model(torch, net)
    assert len(pairs) == len(parameter_slots(net.layers))  # every parameter is compared
    (x, y), (ids, targets) = data(torch)
    logits, loss = torch_gradients(torch, forward, pairs, ids, targets)
    assert_close(net.predict(x), logits.detach().numpy(), "logits")
    assert abs(gradients(net, Adam(), x, y) - loss.item()) <= 1e-10 * loss.item()
    for (layer, name), parameter, transposed in pairs:
        expected = parameter.grad.T if transposed else parameter.grad
        assert_close(layer.grads[name], expected.numpy(), f"{layer!r}.{name}")
    assert np.all(to_numpy(net.layers[1].grads["weights"])[5:] == 0)  # positions not used


def test_adam_step_with_clipping_equals_pytorch(torch):
    net = portanet_model()
    forward, pairs = torch_model(torch, net)
    (x, y), (ids, targets) = data(torch)
    torch_gradients(torch, forward, pairs, ids, targets)
    parameters = [parameter for _, parameter, _ in pairs]
    norm = float(torch.sqrt(sum(torch.sum(p.grad ** 2) for p in parameters)))
    clip = norm / 3  # clipping is active: the gradients are scaled down
    torch.nn.utils.clip_grad_norm_(parameters, clip)
    torch.optim.Adam(parameters, lr=0.01, eps=1e-8).step()
    optimizer = Adam(0.01, epsilon=1e-8, clip_norm=clip)
    gradients(net, optimizer, x, y)
    optimizer.step(parameter_slots(net.layers))
    for (layer, name), parameter, transposed in pairs:
        expected = parameter.detach().T if transposed else parameter.detach()
        assert_close(getattr(layer, name), expected.numpy(), f"{layer!r}.{name} after Adam")


def test_float32_training_losses_equal_pytorch_for_50_steps(backend):
    """The benchmark's recipe (Adam 3e-4, clip_norm 1, batch 32) on the example's model (2
    blocks, width 64, 4 heads, context 64), the same batches: every step's loss agrees to 1e-5
    relative. The two round differently in float32 (6e-8 relative per operation) from the first
    step on; over these 50 steps the losses stay within 2e-7 of each other (measured, also
    with Adam 1e-3), so the bound leaves a margin of 50 for other BLAS libraries and threads."""
    if backend.name not in ("numpy", "torch"):
        pytest.skip("portanet on NumPy against PyTorch: runs once, on the numpy or torch run")
    torch = pytest.importorskip("torch")
    portanet.set_backend("numpy")
    text = CharText(load_text(limit=100_000))
    portanet.set_seed(0)
    net = causal_transformer(len(text.vocabulary), 64)
    torch_step = torch_trainer(torch, torch_transformer(torch, transformer_weights(net), 4),
                               3e-4, clip_norm=1.0)
    optimizer = Adam(3e-4, clip_norm=1.0)
    ours, theirs = [], []
    for _ in range(50):
        x, y = text.batch(32, 64)
        ours.append(net.fit(x, y, epochs=1, batch_size=32, optimizer=optimizer,
                            verbose=0).history["loss"][-1])
        theirs.append(torch_step(torch.from_numpy(x), torch.from_numpy(y)))
    assert theirs[-1] < theirs[0] - 0.5  # it learns: the steps are not all clipped to nothing
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
