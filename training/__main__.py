"""`python -m training card MODEL_DIR`: render a model folder's card (README.md) again, from the values training saved
beside it (`model_card.json`) and the quality numbers `python -m eval.check` wrote there (`quality.json`).

`eval.check` runs it after each check; run it yourself after editing either file. Training itself is
`python -m training.sft`, the merge into the base `python -m training.export`.
"""

import argparse
import sys

from training.model_card import CARD_VALUES_FILE, render_saved_card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    card = commands.add_parser("card", help="render MODEL_DIR/README.md again from its saved values")
    card.add_argument("model_dir", help="an adapter folder (training.sft) or a merged one (training.export)")
    args = parser.parse_args(argv)
    if render_saved_card(args.model_dir) is None:
        print(f"{args.model_dir} has no {CARD_VALUES_FILE} (training.sft writes it): no card to render.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
