"""Chat about one report in the terminal, with the Space's prompt format, history and backends.

```bash
python -m space.chat --report report.txt --endpoint http://127.0.0.1:8000/v1 --model out/merged   # a server
python -m space.chat --report report.txt --model out/gemma3-270m-ko-radiology-lora                # in-process
```

Answers stream as they are generated; every question carries the conversation so far. The endpoint is checked by the
builder's PhysioNet guard: loopback, `--allowed-hosts`, or a remote one with `--allow-remote-endpoint
--no-retention-confirmed` (and `HF_TOKEN`). An empty line asks nothing;
`/새 대화` starts over with the same report; Ctrl-D or `/끝` quits. `KO_RADIOLOGY_*` variables apply as in the Space.
"""

import argparse
import sys
from pathlib import Path

from ko_radiology.cli import run_cli
from space.backends import build_backend
from space.config import GenerationSettings, SpaceConfig, add_data_use_arguments, data_use_values
from space.conversation import ReportChat
from space.translation import ReportTranslator

RESTART, QUIT = "/새 대화", "/끝"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", required=True, type=Path, help="a text file with the report (Korean or English)")
    parser.add_argument("--endpoint", help="OpenAI-compatible base URL; without it the model runs in this process")
    parser.add_argument("--model", help="name sent to the endpoint, or (no --endpoint) a merged/adapter/base folder")
    parser.add_argument("--adapter", help="a PEFT adapter loaded onto --model (in-process only)")
    add_data_use_arguments(parser)
    defaults = GenerationSettings()
    parser.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    parser.add_argument("--temperature", type=float, default=defaults.temperature)
    parser.add_argument("--top-p", type=float, default=defaults.top_p)
    parser.add_argument("--repetition-penalty", type=float, default=defaults.repetition_penalty)
    return parser.parse_args(argv)


def chat_command(argv: list[str]) -> None:
    args = parse_args(argv)
    if not args.report.is_file():
        raise FileNotFoundError(f"--report {args.report} is not a file; pass a text file holding one report.")
    backend = "endpoint" if args.endpoint else "local"
    config = SpaceConfig.from_env(
        backend=backend,
        endpoint=args.endpoint,
        model=args.model,
        adapter=args.adapter,
        **data_use_values(args),
    )
    settings = GenerationSettings(args.max_new_tokens, args.temperature, args.top_p, args.repetition_penalty)
    translator = (
        ReportTranslator(config.translate_endpoint, config.translate_model, config.timeout_s, config.translate_hosts)
        if config.translate_endpoint
        else None
    )
    chat = ReportChat(build_backend(config), translator)
    run(chat, args.report.read_text(encoding="utf-8"), settings)


def main(argv: list[str] | None = None) -> int:
    return run_cli(chat_command, argv)


def run(chat: ReportChat, report: str, settings: GenerationSettings) -> None:
    conversation = chat.start(report)
    for notice in conversation.notices:
        print(f"⚠️ {notice}")
    print(f"질문을 입력하세요 ({RESTART}: 새 대화, {QUIT} 또는 Ctrl-D: 끝).")
    while (question := _read_question()) is not None:
        if question == QUIT:
            break
        if question == RESTART:
            conversation = chat.start(report)
            continue
        shown = ""
        for answer in chat.ask(conversation, question, settings):
            print(answer[len(shown) :] if answer.startswith(shown) else f"\n{answer}", end="", flush=True)
            shown = answer
        print()
        for notice in conversation.fit_notices:
            print(f"⚠️ {notice}")


def _read_question() -> str | None:
    """The next non-empty line, or None at end of input."""
    while True:
        try:
            line = input("질문> ").strip()
        except EOFError:
            print()
            return None
        if line:
            return line


if __name__ == "__main__":
    sys.exit(main())
