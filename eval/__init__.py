"""The eval runners: `python -m eval.compare | judge | report | calibrate`, and the stand-in judge (see README.md)."""
