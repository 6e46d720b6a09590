"""The metric's Hub Space page: its card, once the module has loaded with what `requirements.txt` installed.

It scores nothing here: judging needs a judge endpoint and its key, which a public page must not spend. Score where
you call `evaluate.load("org/radiology_judge", "accuracy")`.
"""

from pathlib import Path

import evaluate
import gradio as gr

HERE = Path(__file__).resolve().parent
MODULE = evaluate.load(str(HERE), "accuracy")  # fails at start-up, in the Space's log, if the install is incomplete
CARD = (HERE / "README.md").read_text(encoding="utf-8").split("---\n", 2)[2]

with gr.Blocks(title=MODULE.name) as demo:
    gr.Markdown(CARD)

if __name__ == "__main__":
    demo.launch()
