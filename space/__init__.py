"""The Gradio Space (`app.py`), its terminal twin (`python -m space.chat`) and its deployment (`space.deploy`).

The app's modules import only `ko_radiology` and `dataset_builder` from this repository; `space.deploy` copies exactly
those into the Space folder.
"""
