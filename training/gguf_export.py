"""A merged model as one GGUF file for llama.cpp, Ollama and LM Studio, made by llama.cpp's own converter.

`training.export --format gguf` calls `export_gguf` with the merged folder (an adapter is merged first). The file
is written by `convert_hf_to_gguf.py` of the pinned llama.cpp (`ko_radiology.llama_cpp`, with its vendored gguf-py)
for `f32`, `f16`, `bf16` and `q8_0`; `q4_k_m` is converted to bf16 and then quantized by its `llama-quantize`. The
converter writes the tokenizer's chat template into the file; its end-of-generation token (`tokenizer.ggml.
eos_token_id`) is set to the token that closes the assistant's turn (`<end_of_turn>` for Gemma 3), so every runtime
stops where the model ends its answer. An Ollama `Modelfile` is written beside the file, and the model card says how
the file was made.
"""

import json
import shutil
import sys
from pathlib import Path

from ko_radiology import llama_cpp
from ko_radiology.atomic_io import replace_dir, write_text_atomically
from ko_radiology.chat_tokens import require_chat_template, template_special_tokens
from ko_radiology.embedded_models import CHAT_TEMPLATE
from ko_radiology.prompts import SYSTEM_PROMPT
from training.model_card import CARD_VALUES_FILE, QUALITY_FILE, render_saved_card

CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")
"""`--outtype`s of llama.cpp's converter."""
QUANTIZED_TYPES = {"q4_k_m": "bf16"}
"""Types `llama-quantize` makes, each from the converter type it quantizes."""
GGUF_TYPES = (*CONVERTER_TYPES, *QUANTIZED_TYPES)
MODELFILE = "Modelfile"
GGUF_HUB_FILES = ("*.gguf", MODELFILE, "README.md", QUALITY_FILE)
"""What `--push_to_hub` uploads from a GGUF folder: the Hub lists each .gguf at the repo's root as a GGUF model."""
CONVERTER_LOG = "convert.log"

OLLAMA_TEMPLATE = """\
{{- $system := "" }}
{{- range .Messages }}{{ if eq .Role "system" }}{{ $system = .Content }}{{ end }}{{ end }}
{{- $first := true }}
{{- range $i, $m := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq $m.Role "user" }}<start_of_turn>user
{{ if and $first $system }}{{ $system }}

{{ end }}{{ $m.Content }}<end_of_turn>
{{ if $last }}<start_of_turn>model
{{ end }}
{{- $first = false }}
{{- else if eq $m.Role "assistant" }}<start_of_turn>model
{{ $m.Content }}<end_of_turn>
{{ end }}
{{- end }}"""
"""`ko_radiology/chat_template.jinja` in Ollama's Go template language: the system prompt opens the first user turn,
each turn is closed by `<end_of_turn>`; Ollama adds `<bos>` itself, as the GGUF's `add_bos_token` says."""


def gguf_file_name(out_dir: Path, gguf_type: str) -> str:
    """`ko-radiology-270m-Q8_0.gguf` for `--out out/ko-radiology-270m-gguf`: the Hub's `NAME-TYPE.gguf` convention."""
    name = out_dir.name.removesuffix("-gguf").removesuffix("-GGUF")
    return f"{name}-{gguf_type.upper()}.gguf"


def end_of_turn_token(tokenizer) -> str:
    """The special token the chat template writes after the assistant's answer (Gemma 3: `<end_of_turn>`)."""
    _, closing = template_special_tokens(tokenizer)
    if not closing:
        raise ValueError("The chat template closes the assistant's turn with no special token; a GGUF would not stop.")
    return tokenizer.convert_ids_to_tokens(closing[0])


def converter_input(model_dir: Path, staging: Path, end_of_turn: str) -> Path:
    """`model_dir` as the converter should read it: the same files (linked, not copied), with the tokenizer's
    `eos_token` set to the end-of-turn token, which the converter writes as the GGUF's end of generation."""
    staging.mkdir()
    for path in model_dir.iterdir():
        if path.is_file() and path.name != "tokenizer_config.json":
            (staging / path.name).symlink_to(path.resolve())
    config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    (staging / "tokenizer_config.json").write_text(json.dumps({**config, "eos_token": end_of_turn}, indent=2))
    return staging


def convert(model_dir: Path, outfile: Path, outtype: str, model_name: str) -> Path:
    """Run llama.cpp's converter with this Python (it needs torch and transformers, which training has); its log
    lands beside `outfile`."""
    command = [sys.executable, str(llama_cpp.converter_script()), str(model_dir), "--outfile", str(outfile)]
    command += ["--outtype", outtype, "--model-name", model_name]
    print(f"Converting to GGUF {outtype} with {llama_cpp.converter_version()} ...", flush=True)
    llama_cpp.run_logged(command, outfile.parent / CONVERTER_LOG, echo=lambda line: "successfully exported" in line)
    return outfile


def quantizer_for(gguf_type: str) -> Path:
    """The built `llama-quantize`, or a clear error saying how to build it (checked before any conversion)."""
    quantizer = llama_cpp.binary("llama-quantize")
    if quantizer.path is None:
        raise ValueError(
            f"--gguf-type {gguf_type} needs llama.cpp's llama-quantize: {quantizer.reason} "
            f"Or pick one of {', '.join(CONVERTER_TYPES)}, which need no build."
        )
    return quantizer.path


def quantize(quantizer: Path, source: Path, outfile: Path, gguf_type: str) -> Path:
    print(f"Quantizing to {gguf_type.upper()} with {quantizer} ...", flush=True)
    llama_cpp.run_logged([str(quantizer), str(source), str(outfile), gguf_type.upper()], source.parent / CONVERTER_LOG)
    return outfile


def modelfile(gguf_name: str, end_of_turn: str, project_template: bool) -> str:
    """An Ollama Modelfile for the file beside it: the chat template (where it is the project's; Ollama otherwise
    takes the one in the GGUF), the system prompt the model was trained with, the stop token, greedy decoding."""
    lines = [
        f"# ollama create ko-radiology -f {MODELFILE} && ollama run ko-radiology",
        f"FROM ./{gguf_name}",
    ]
    if project_template:
        lines.append(f'TEMPLATE """{OLLAMA_TEMPLATE}"""')
    lines += [
        f'SYSTEM """{SYSTEM_PROMPT}"""',
        f'PARAMETER stop "{end_of_turn}"',
        "# Greedy, without Ollama's default repeat penalty: the decoding the model card's numbers were measured with",
        "PARAMETER temperature 0",
        "PARAMETER repeat_penalty 1",
    ]
    return "\n".join(lines) + "\n"


def export_gguf(model_dir: str | Path, out_dir: str | Path, gguf_type: str) -> Path:
    """Convert the merged model in `model_dir` to `out_dir/NAME-TYPE.gguf` with a Modelfile and card beside it;
    `out_dir` is replaced whole at the end (the caller checked it may be), so a failed export leaves nothing."""
    from transformers import AutoTokenizer

    if gguf_type not in GGUF_TYPES:
        raise ValueError(f"--gguf-type {gguf_type} is not one of {', '.join(GGUF_TYPES)}.")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    quantizer = quantizer_for(gguf_type) if gguf_type in QUANTIZED_TYPES else None
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    require_chat_template(tokenizer, model_dir)
    end_of_turn = end_of_turn_token(tokenizer)
    name = gguf_file_name(out_dir, gguf_type)

    def write(tmp_dir: Path) -> None:
        staging = converter_input(model_dir, tmp_dir / ".converter-input", end_of_turn)
        model_name = name.removesuffix(f"-{gguf_type.upper()}.gguf")
        if gguf_type in QUANTIZED_TYPES:
            outtype = QUANTIZED_TYPES[gguf_type]
            unquantized = convert(staging, tmp_dir / f".{outtype}.gguf", outtype, model_name)
            quantize(quantizer, unquantized, tmp_dir / name, gguf_type)
            unquantized.unlink()
        else:
            convert(staging, tmp_dir / name, gguf_type, model_name)
        shutil.rmtree(staging)
        project_template = tokenizer.chat_template == CHAT_TEMPLATE
        write_text_atomically(tmp_dir / MODELFILE, modelfile(name, end_of_turn, project_template))
        write_card(model_dir, tmp_dir, name, gguf_type, end_of_turn, out_dir)

    replace_dir(out_dir, write)
    size_mb = (out_dir / name).stat().st_size / 1e6
    print(f"GGUF {gguf_type.upper()} written to {out_dir / name} ({size_mb:.0f} MB), with {MODELFILE} beside it.")
    return out_dir / name


def write_card(model_dir: Path, out_dir: Path, name: str, gguf_type: str, end_of_turn: str, final_dir: Path) -> None:
    """The merged model's card, rendered for the GGUF (how it was made, its size) where the model has saved card
    values (a model trained here); other models get no card."""
    for card_file in (CARD_VALUES_FILE, QUALITY_FILE):
        if (model_dir / card_file).is_file():
            shutil.copy2(model_dir / card_file, out_dir / card_file)
    gguf = {
        "file": name,
        "type": gguf_type.upper(),
        "size": f"{(out_dir / name).stat().st_size / 1e6:.0f} MB",
        "converter": llama_cpp.converter_version(),
        "outtype": QUANTIZED_TYPES.get(gguf_type, gguf_type),
        "quantized": gguf_type in QUANTIZED_TYPES,
        "end_of_turn": end_of_turn,
    }
    render_saved_card(out_dir, merged=True, model_name=final_dir.name, model_id=str(final_dir), gguf=gguf)
