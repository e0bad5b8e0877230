"""A small causal transformer (or an LSTM) that learns text one character at a time, on any
backend.

    python examples/charlm.py                          # the Python standard library's source
    python examples/charlm.py --text input.txt --steps 3000
    python examples/charlm.py --model lstm             # embedding, LSTM, the next character
    PORTANET_BACKEND=jax python examples/charlm.py     # the step compiled with jax.jit
    python examples/charlm.py --load charlm.npz --generate 500 --prompt "def "

Training prints the validation loss and a sample of generated text every --sample-every steps
and at the end, then saves the network (its vocabulary in the file's metadata); --load generates
from a saved network instead of training.
"""

import argparse
import time

import portanet
from portanet.models import causal_transformer, lstm_language_model
from portanet.optimizers import Adam
from portanet.text import CharText, generate, load_text


def options():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--text", help="UTF-8 text file (default: the Python standard library)")
    parser.add_argument("--limit", type=int, help="use the first N characters of the text")
    parser.add_argument("--model", choices=("transformer", "lstm"), default="transformer")
    parser.add_argument("--blocks", type=int, default=2, help="transformer blocks")
    parser.add_argument("--width", type=int, default=64, help="embedding width")
    parser.add_argument("--heads", type=int, default=4, help="attention heads")
    parser.add_argument("--hidden", type=int, default=128, help="LSTM hidden units")
    parser.add_argument("--context", type=int, default=64,
                        help="characters the model sees (the LSTM: per training window)")
    parser.add_argument("--tie-embeddings", action="store_true",
                        help="transformer: score characters with the embedding matrix")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=1000, help="training steps (batches)")
    parser.add_argument("--sample-every", type=int, default=250, help="steps between samples")
    parser.add_argument("--learning-rate", type=float,
                        help="Adam's rate (default: 1e-3 for the transformer, 3e-3 for the LSTM)")
    parser.add_argument("--clip-norm", type=float, default=1.0, help="gradient clipping")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--generate", type=int, default=200, help="characters per sample")
    parser.add_argument("--prompt", default="def ")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default="charlm.npz", help="where to save the network")
    parser.add_argument("--load", help="generate from this saved network instead of training")
    args = parser.parse_args()
    if args.model == "lstm" and args.tie_embeddings:
        parser.error("--tie-embeddings is for the transformer: the LSTM model has no tied output")
    if args.learning_rate is None:
        args.learning_rate = 1e-3 if args.model == "transformer" else 3e-3
    return args


def sample(net, text, args):
    """Generated text from ``args.prompt``, the same for the same seed and network (each new
    character from the last ``context`` ones)."""
    portanet.set_seed(args.seed)
    ids = generate(net, text.encode(args.prompt), args.generate, net.metadata["context"],
                   temperature=args.temperature, top_k=args.top_k)
    return text.decode(ids)


def train(args):
    text = CharText(load_text(args.text, limit=args.limit))
    print(f"text: {len(text.ids['train'])} training and {len(text.ids['validation'])} validation "
          f"characters, vocabulary of {len(text.vocabulary)}")
    portanet.set_seed(args.seed)
    if args.model == "lstm":
        net = lstm_language_model(len(text.vocabulary), args.width, args.hidden)
    else:
        net = causal_transformer(len(text.vocabulary), args.context, args.width, args.heads,
                                 args.blocks, tie_embeddings=args.tie_embeddings)
    net.metadata = {"vocabulary": text.vocabulary, "context": args.context}
    net.summary(input_shape=(args.context,))
    optimizer = Adam(args.learning_rate, clip_norm=args.clip_norm)
    x_val, y_val = text.batch(4 * args.batch_size, args.context, split="validation")
    done, start = 0, time.perf_counter()
    while done < args.steps:
        steps = min(args.sample_every, args.steps - done)
        x, y = text.batch(steps * args.batch_size, args.context)
        history = net.fit(x, y, epochs=1, batch_size=args.batch_size, optimizer=optimizer,
                          verbose=0)
        done += steps
        loss = history.history["loss"][-1]
        val_loss = net.evaluate(x_val, y_val)["loss"]
        print(f"step {done}/{args.steps}   loss={loss:.4f}   val_loss={val_loss:.4f}   "
              f"{time.perf_counter() - start:.1f} s   step: {history.compiled}")
        print("sample:", repr(sample(net, text, args)))
    net.save(args.save)
    print(f"saved the network to {args.save}")


def main():
    args = options()
    print("backend:", portanet.get_backend())
    if args.load:
        net = portanet.load(args.load)
        text = CharText(net.metadata["vocabulary"], validation=0)
        print("sample:", repr(sample(net, text, args)))
    else:
        train(args)


if __name__ == "__main__":
    main()
