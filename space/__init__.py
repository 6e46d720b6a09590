"""The Gradio Space (`app.py`), its terminal twin (`python -m space.chat`) and its deployment (`space.deploy`).

`app.py` imports this package as installed (`pip install "ko-radiology-gpt[space]"`, or `make setup`), so
`python space/app.py` and the Hub's `python app.py` run the same code; `space.deploy` writes that requirement into the
Space folder.
"""
