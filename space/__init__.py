"""The Gradio Space (`app.py`), its terminal twin (`python -m space.chat`) and its deployment (`space.deploy`).

Besides `space` itself, the app's modules import only `ko_radiology` from this repository; `space.deploy` copies
exactly those modules into the Space folder.
"""
