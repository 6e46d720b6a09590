"""Ko-CXR-QA: English chest X-ray reports (MIMIC-CXR layout) → parsed notes, Korean translations and Korean QA.

`datasets` ≥ 4 no longer runs loading scripts, so builds are run locally (`python -m dataset_builder build`, through
the same `Pipeline`) and published as Parquet; users then `load_dataset("org/ko-cxr-qa", "qa")`. This builder is the
`datasets` view of the gold sample, for code that wants a `DatasetBuilder`.

Data the user brings (`data_dir`)::

    mimic-cxr-reports/                       the MIMIC-CXR reports tree (credentialed; PhysioNet)
    ├── files/pNN/pNNNNNNNN/sNNNNNNNN.txt
    └── mimic-cxr-2.0.0-split.csv.gz         optional official split

or a folder of `.txt` reports, or a `{id, note}` CSV. The shipped `ko_radiology/sample/` has this layout plus
gold translations and QA, which `--gold` uses.
"""

from pathlib import Path

import datasets

from dataset_builder.options import BuildOptions
from dataset_builder.pipeline import CONFIG_KEYS, Pipeline
from dataset_builder.schemas import FEATURES
from ko_radiology.splits import SPLIT_NAMES

_CITATION = """\
@misc{ko_radiology_gpt,
  title  = {Ko-Radiology-GPT: Korean question answering on chest X-ray reports},
  author = {Ko-Radiology-GPT contributors},
  year   = {2026},
}
@article{johnson2019mimiccxr,
  title   = {MIMIC-CXR, a de-identified publicly available database of chest radiographs with free-text reports},
  author  = {Johnson, Alistair E. W. and Pollard, Tom J. and Berkowitz, Seth J. and others},
  journal = {Scientific Data},
  volume  = {6},
  year    = {2019},
}
"""
_DESCRIPTION = """\
Korean instruction data built from English chest X-ray reports: parsed report sections (`notes`), section-by-section
Korean translations with quality flags (`translation`), and Korean instruction/answer pairs in four task types —
질문 답변, 축약어 확장, 바꾸어 말하기, 요약 — in a chat `messages` format ready for SFT (`qa`).
"""
_HOMEPAGE = "https://github.com/ko-radiology-gpt/ko-radiology-gpt"
_LICENSE = "PhysioNet Credentialed Health Data License 1.5.0 (derived from MIMIC-CXR); the synthetic sample: CC BY 4.0"
_VERSION = datasets.Version("1.0.0")

_CONFIG_DESCRIPTIONS = {
    "notes": "Reports split into sections (examination, indication, history, technique, comparison, findings, "
    "impression, recommendations, notification, addendum) plus any other sections and parse flags.",
    "translation": "English and Korean text per section, the translator backend and model, and quality flags.",
    "qa": "Korean report, task type, instruction, answer, chat messages in the shared prompt format, and the "
    "quality flags of the translation the pair was built from.",
}


class KoCxrQa(datasets.GeneratorBasedBuilder):
    """The `datasets` builder over the gold annotations of `data_dir` (the shipped sample's layout):

        builder = KoCxrQa(config_name="qa", data_dir="ko_radiology/sample")
        builder.download_and_prepare()
        qa = builder.as_dataset()

    Builds with a model go through `python -m dataset_builder build`, which shares one pipeline across configs.
    """

    BUILDER_CONFIGS = [
        datasets.BuilderConfig(name=name, version=_VERSION, description=description)
        for name, description in _CONFIG_DESCRIPTIONS.items()
    ]
    DEFAULT_CONFIG_NAME = "qa"

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=_DESCRIPTION,
            features=FEATURES[self.config.name],
            homepage=_HOMEPAGE,
            license=_LICENSE,
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        if not self.config.data_dir or not Path(self.config.data_dir).exists():
            raise ValueError(f"{self.config.name} needs data_dir= pointing at your reports; see the docstring.")
        self.pipeline = Pipeline(BuildOptions(data_dir=self.config.data_dir, gold=True, configs=self.config.name))
        notes = self.pipeline.notes_by_split()
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"split": split})
            for split in SPLIT_NAMES
            if notes.get(split)
        ]

    def _generate_examples(self, split: str):
        key = CONFIG_KEYS[self.config.name]
        for record in self.pipeline.records(self.config.name, split):
            yield record[key], record
