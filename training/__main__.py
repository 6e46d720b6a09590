"""`python -m training card MODEL_DIR`: render a model folder's card (README.md) again, from the values training saved
beside it (`model_card.json`) and the quality numbers `python -m eval.check` wrote there (`quality.json`).

`eval.check` runs it after each check; run it yourself after editing either file. Training itself is
`python -m training.sft`, the merge into the base `python -m training.export`.
"""

import argparse
import sys
from pathlib import Path

from ko_radiology.cli import run_cli
from training.model_card import CARD_VALUES_FILE, render_saved_card


def card_command(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m training", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    card = commands.add_parser("card", help="render MODEL_DIR/README.md again from its saved values")
    card.add_argument("model_dir", help="an adapter folder (training.sft) or a merged one (training.export)")
    args = parser.parse_args(argv)
    if not Path(args.model_dir).is_dir():
        raise FileNotFoundError(
            f"{args.model_dir} is not a folder. Pass the output_dir of training.sft or training.export."
        )
    if render_saved_card(args.model_dir) is None:
        print(f"{args.model_dir} has no {CARD_VALUES_FILE} (training.sft writes it): no card to render.")


def main(argv: list[str] | None = None) -> int:
    return run_cli(card_command, argv)


if __name__ == "__main__":
    sys.exit(main())
