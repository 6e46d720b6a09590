"""Shared library of Ko-Radiology-GPT: what more than one deployable needs, defined once.

- `prompts`: the one prompt format (report + instruction → chat messages); `embedded_models`: the embedded base model
  prepared from its GGUF; `model_loading`: which model a name means and how it loads; `chat_tokens`: a model's chat
  template and its special tokens; `generation`: local batched generation with a fine-tuned model.
- `hardware`: CPU/GPU probes and the one dtype policy (`default_dtype`); `cache`: the project's cache folder.
- `sections`: the report section parser; `glossary`: the English→Korean radiology glossary; `translation`: a report
  translated section by section with a chat model; `sample_corpus`: the shipped sample (`sample/`) and its gold
  annotations; `splits`: which split each study belongs to.
- `llm`: the one client for every call to a model server (OpenAI-compatible chat, streamed or cached, and Batch API,
  cost ledger, rate limits, the PhysioNet data-use guard); `judge`: the LLM judge built on it.
- `text_checks`, `reference_metrics`, `statistics`: Korean text checks, judge-free metrics, confidence intervals;
  `atomic_io`: writes that land whole or not at all; `dataset_folders`: a Hub-shaped folder read afresh, never a stale
  cache of another folder of the same name; `cpu_blas`: MKL's fast kernels on AMD CPUs (load before torch);
  `processes`: start local services, wait until they answer, stop them with all they started; `llama_cpp`: llama.cpp
  (GGUF converter, llama-server, llama-bench, llama-quantize) from the pinned llama-cpp-python sdist, built once.

The four deployables (`dataset_builder`, `training`, `space`, `eval`) import from here and never copy it.
"""

__version__ = "0.1.0"
SOURCE = f"git+https://github.com/ko-radiology-gpt/ko-radiology-gpt@v{__version__}"
"""Where pip gets this version: the repository at its release tag (the metric and the Space pin it)."""


def requirement(*extras: str, source: str = SOURCE) -> str:
    """This project as one pip requirement line, e.g. `ko-radiology-gpt[space] @ git+…@v0.1.0`."""
    return f"ko-radiology-gpt{'[' + ','.join(extras) + ']' if extras else ''} @ {source}"
