"""Shared library of Ko-Radiology-GPT: the prompt format, base-model preparation and text checks.

The four deployables (`dataset_builder`, `training`, `space`, `eval`) import from here and never copy it.
"""
