"""Draw docs/images/speed.svg from the JSON files of benchmarks/run.py in benchmarks/results/.

    python benchmarks/chart.py [--results DIR] [--out PATH]

One group of bars per case: portanet's time over PyTorch's (same model, weights, batches and
threads) on each backend; below the line at 1.0 portanet is faster.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import FixedLocator, NullLocator

HERE = Path(__file__).resolve().parent
# (file in the results folder, label, colour)
BACKENDS = (("numpy.json", "NumPy", "#4c72b0"),
            ("jax.json", "JAX, step compiled (jax.jit)", "#dd8452"),
            ("torch.json", "PyTorch, eager (compile=\"auto\")", "#55a868"),
            ("torch-compiled.json", "PyTorch, step compiled (torch.compile)", "#8fd19e"))
LABELS = {"tutorial-mlp": "tutorial MLP\nSGD, batch 64",
          "modern-mlp": "modern MLP\nAdam, batch 128",
          "cnn": "CNN\nAdam, batch 128",
          "per-sample": "per-sample\nbatch 1, float64",
          "predict": "predict\n10k images",
          "wide-mlp": "wide MLP\nbatch 1024",
          "transformer": "transformer\nbatch 32",
          "lstm-lm": "LSTM\nbatch 32",
          "gru-lm": "GRU\nbatch 32"}


def ratios(report):
    """{case: portanet time / PyTorch time} of one run's report."""
    found = {}
    for name, entry in report["cases"].items():
        impls = entry["impls"]
        if impls.get("portanet") and impls.get("torch"):
            found[name] = impls["portanet"]["median"] / impls["torch"]["median"]
    return found


def machine_line(reports):
    """The machine and the library versions, from the reports' machine info."""
    info = next(iter(reports.values()))["machine"]
    line = (f"{info['cpu'].replace('(R)', '')}, {info['cores']} cores, {info['threads']} threads; "
            f"PyTorch {info['torch']}, NumPy {info['numpy']} ({info['blas']})")
    if "jax.json" in reports:
        line += f", JAX {reports['jax.json']['machine']['backend_version']}"
    return line


def draw(results, out):
    """Read the reports in ``results`` and write the chart to ``out``."""
    reports = {name: json.loads((results / name).read_text())
               for name, _, _ in BACKENDS if (results / name).exists()}
    if not reports:
        raise SystemExit(f"benchmarks/chart.py: no results in {results}")
    found = {name: ratios(report) for name, report in reports.items()}
    cases = [case for case in LABELS if any(case in r for r in found.values())]
    drawn = [backend for backend in BACKENDS if backend[0] in found]
    width = 0.8 / len(drawn)

    plt.rcParams["svg.hashsalt"] = "portanet"  # the same ids on every run
    fig, ax = plt.subplots(figsize=(10, 5.2))
    for k, (name, label, colour) in enumerate(drawn):
        xs = [i + (k - (len(drawn) - 1) / 2) * width for i, case in enumerate(cases)
              if case in found[name]]
        values = [found[name][case] for case in cases if case in found[name]]
        ax.bar(xs, [v - 1 for v in values], width, bottom=1, color=colour, label=label)
        for x, v in zip(xs, values):
            ax.annotate(f"{v:.2f}", (x, v), xytext=(0, 3 if v >= 1 else -3),
                        textcoords="offset points", ha="center",
                        va="bottom" if v >= 1 else "top", fontsize=8)
    ax.axhline(1, color="black", linewidth=1)
    ax.text(len(cases) - 0.5, 1, " PyTorch CPU\n below: portanet\n faster", va="center",
            ha="left", fontsize=9)
    ax.set_yscale("log")
    every = sorted({v for r in found.values() for v in r.values()} | {1})
    low, high = min(every[0], 0.5) / 1.4, max(every[-1], 2) * 1.4
    ticks = [t for t in (0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32) if low <= t <= high]
    ax.set_ylim(low, high)
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_yticklabels([f"{t:g}" for t in ticks])
    ax.set_xticks(range(len(cases)), [LABELS[case] for case in cases], fontsize=9)
    ax.set_xlim(-0.5, len(cases) - 0.5)
    ax.set_ylabel("portanet time / PyTorch time (log scale)")
    ax.set_title("portanet against PyTorch on the CPU, same model, weights, batches and threads\n"
                 + machine_line(reports), fontsize=10)
    ax.legend(title="portanet's backend", fontsize=9, title_fontsize=9, ncol=len(drawn),
              loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None})


def main(argv=None):
    """Draw the chart from the command line's folders."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=HERE / "results",
                        help="folder of numpy.json, jax.json, torch.json and torch-compiled.json")
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "images" / "speed.svg")
    args = parser.parse_args(argv)
    draw(args.results, args.out)
    print(args.out)


if __name__ == "__main__":
    main()
