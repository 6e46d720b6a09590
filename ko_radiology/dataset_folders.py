"""Loading a dataset config from a Hub id or from a local Hub-shaped folder, without a stale cache.

`datasets` (5.2) names the cache of a local folder after the folder's name, config and split patterns, not its
content: two exports both called `ko-cxr-qa` (the sample's and a MIMIC build's, or one folder re-exported with more
rows) load as whichever was read first. A local folder is therefore always read afresh from its Parquet files; this
costs a second or two for the sample and is what every part that reads such a folder calls.
"""

from pathlib import Path

import datasets


def load_dataset_config(name_or_path: str, config_name: str, **kwargs) -> datasets.DatasetDict | datasets.Dataset:
    """`datasets.load_dataset(name_or_path, config_name, **kwargs)`, re-read from disk when it is a local folder.

    The cached split sizes of the folder's previous content would fail verification, so it is skipped for a folder
    (there is nothing downloaded to verify).
    """
    if Path(name_or_path).is_dir():
        kwargs = {"download_mode": "force_redownload", "verification_mode": "no_checks", **kwargs}
    return datasets.load_dataset(name_or_path, config_name, **kwargs)
