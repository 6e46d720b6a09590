"""The dataclass command lines: `HfArgumentParser` with `TrlParser`'s `--config FILE.yaml`, for commands without trl.

`TrlParser.parse_args_and_config` (what `training.sft` uses) is the model: the file's keys set the defaults and flags
given too override them. The builder and the eval runners install transformers but not trl (a GPU training stack), so
this parser offers the same call; `HfArgumentParser.parse_yaml_file` cannot (flags could not override it). A key no
dataclass declares is an error that names it, not TrlParser's list of would-be flags.
"""

import argparse
import difflib
import sys
from collections.abc import Iterable
from pathlib import Path

import yaml
from transformers import HfArgumentParser


class ConfigArgumentParser(HfArgumentParser):
    """`HfArgumentParser` plus `--config FILE.yaml`, read as `TrlParser.parse_args_and_config` reads it."""

    def __init__(self, dataclass_types, **kwargs):
        super().__init__(dataclass_types, **kwargs)
        self.add_argument("--config", type=Path, help="YAML file with any of these options; flags given too win.")

    def parse_args_and_config(self, args: Iterable[str] | None = None) -> tuple:
        """The dataclasses, filled from `--config` (if given), then from the flags.

        Raises:
            ValueError: If the file is not a YAML mapping or has a key no option declares (named, with the nearest).
            FileNotFoundError: If the file does not exist.
        """
        args = list(sys.argv[1:] if args is None else args)
        config_reader = argparse.ArgumentParser(add_help=False)
        config_reader.add_argument("--config", type=Path)
        path = config_reader.parse_known_args(args)[0].config
        if path is not None:
            values = self.read_config(path)
            for action in self._actions:  # as TrlParser.set_defaults_with_config: a value in the file is enough
                if action.dest in values:
                    action.default, action.required = values[action.dest], False
        *outputs, rest = self.parse_args_into_dataclasses(args=args)
        del rest.config
        return (*outputs, rest) if vars(rest) else tuple(outputs)

    def read_config(self, path: Path) -> dict:
        if not path.is_file():
            raise FileNotFoundError(f"--config {path} does not exist; pass a YAML file of `option: value` lines.")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"--config {path} is not valid YAML: {str(error).splitlines()[0]}") from None
        if not isinstance(values, dict):
            raise ValueError(f"--config {path} is not a YAML mapping of `option: value` lines.")
        known = {action.dest for action in self._actions} - {"help", "config"}
        unknown = sorted(set(values) - known)
        if unknown:
            close = difflib.get_close_matches(unknown[0], known, n=2)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise ValueError(
                f"--config {path} has a key {unknown[0]!r}{hint} that is no option of {self.prog}: fix its spelling "
                f"or remove it (`{self.prog} --help` lists the options)."
            )
        return values
