"""Average the weights of several snapshots of one model (stochastic weight averaging).

    .venv/bin/python scripts/average_weights.py A.safetensors B.safetensors ... --out OUT.safetensors

Stage 4 of the default ran a cosine learning-rate decay with warm restarts; the weights at
the end of each cycle are snapshots of one optimisation run, and their mean (SWA) often
generalises better than any one of them at no cost at fill time. Measured for the
default in the README (it did not help: the EMA weights already average). The card of
the first input is kept, with a ``weight_average`` entry naming every source.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bidsfill.diffusion.weights import average_weights, save_weights


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("inputs", nargs="+", type=Path, help="snapshot weights (cards beside them)")
    p.add_argument("--out", type=Path, required=True, help="averaged weights path")
    args = p.parse_args()
    try:
        model, card = average_weights(args.inputs)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    card["name"] = args.out.with_suffix("").name
    print(f"{save_weights(model, card, args.out)}: mean of {len(args.inputs)} snapshots")


if __name__ == "__main__":
    main()
