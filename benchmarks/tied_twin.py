"""Does the tied transformer learn as PyTorch's does? examples/charlm.py's model with
``--tie-embeddings`` and its torch.nn twin, the same number of steps; untied for reference.

    python benchmarks/tied_twin.py [TEXT] [--steps 300] [--limit N] [--learning-rate 1e-3]

For tied and then untied output scores, portanet (on PORTANET_BACKEND, default NumPy) trains
examples/charlm.py's default model (2 blocks, width 64, 4 heads, context 64, batch 32, Adam 1e-3,
clip_norm 1, seed 0) for ``--steps`` steps on TEXT (default: the standard library's source, as the
example); PyTorch then trains its torch.nn twin (benchmarks/torch_models.py; tied: one
nn.Parameter as embedding and output matrix) from the same initial weights on the same batches
with the same optimizer. All are evaluated on every consecutive window of the validation part
(the last 10 % of the text); the script prints the four losses and portanet's difference from
PyTorch, which should stay within 0.05 nats per character.
"""

import argparse
import time

import numpy as np
from learning import torch_loss
from run import set_threads
from torch_models import torch_trainer, torch_transformer, transformer_weights

import portanet
from portanet.backend import to_numpy
from portanet.models import causal_transformer
from portanet.optimizers import Adam
from portanet.text import CharText, load_text

MODEL = dict(blocks=2, width=64, heads=4, context=64)  # examples/charlm.py's defaults
BATCH, CLIP_NORM, SEED = 32, 1.0, 0
TARGET = 0.05  # nats per character


def options():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("text", nargs="?", help="UTF-8 text file (default: the standard library)")
    parser.add_argument("--limit", type=int, help="use the first N characters of the text")
    parser.add_argument("--steps", type=int, default=300, help="training steps of each")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's")
    parser.add_argument("--threads", type=int, help="BLAS and torch threads (default: NumPy's)")
    return parser.parse_args()


def train_both(text, x, y, validation, tie, learning_rate):
    """portanet's and PyTorch's validation losses after training on ``x``, ``y``."""
    import torch
    portanet.set_seed(SEED)
    net = causal_transformer(len(text.vocabulary), MODEL["context"], MODEL["width"],
                             MODEL["heads"], MODEL["blocks"], tie_embeddings=tie)
    model = torch_transformer(torch, transformer_weights(net), MODEL["heads"])
    start = time.perf_counter()
    net.fit(x, y, epochs=1, batch_size=BATCH, optimizer=Adam(learning_rate, clip_norm=CLIP_NORM),
            verbose=0)
    ours = net.evaluate(*validation)["loss"]
    seconds = time.perf_counter() - start
    step = torch_trainer(torch, model, learning_rate, CLIP_NORM)
    for i in range(0, len(x), BATCH):
        step(torch.from_numpy(x[i:i + BATCH]), torch.from_numpy(y[i:i + BATCH]))
    return ours, torch_loss(model, *validation), seconds


def main():
    args = options()
    threads = set_threads(args.threads)
    print(f"backend: {portanet.get_backend()}; BLAS and torch threads: {threads}")
    text = CharText(load_text(args.text, limit=args.limit))
    validation = tuple(np.asarray(to_numpy(a))
                       for a in text.windows(MODEL["context"], split="validation"))
    print(f"text: {args.text or 'the standard library'}: {len(text.ids['train'])} training and "
          f"{len(text.ids['validation'])} validation characters ({len(validation[0])} windows), "
          f"vocabulary of {len(text.vocabulary)}; {args.steps} steps of Adam "
          f"{args.learning_rate:g}")
    portanet.set_seed(SEED)
    x, y = (np.asarray(to_numpy(a)) for a in text.batch(args.steps * BATCH, MODEL["context"]))
    for tie in (True, False):
        ours, theirs, seconds = train_both(text, x, y, validation, tie, args.learning_rate)
        difference = ours - theirs
        print(f"{'tied' if tie else 'untied':6}  portanet {ours:.4f} ({seconds:.0f} s)  torch "
              f"{theirs:.4f}  difference {difference:+.4f} nats/char: "
              f"{'within' if abs(difference) <= TARGET else 'beyond'} {TARGET}", flush=True)


if __name__ == "__main__":
    main()
