"""Run the demo: a local OpenAI-compatible server on a merged model and the Space wired to it, until Ctrl-C.

```bash
python -m space.demo --model out/adapters/KEY/merged          # what `make demo` runs after training and merging
python -m space.demo --model out/adapters/KEY/merged --server transformers   # not llama.cpp, even where it is built
KO_RADIOLOGY_ALLOWED_HOSTS=10.0.0.5 python -m space.demo \
    --endpoint http://10.0.0.5:8080/v1 --endpoint-model ko-radiology   # the Space only, against your own endpoint
python -m space.demo --model embedded:base --run -- \
    python -m eval.judge ... --judge-base-url {endpoint} --judge-model {model}
python -m space.demo --stand-in-judge --run -- python -m eval.judge ... --judge-base-url {endpoint}
```

`--model` is served by llama.cpp's `llama-server` on the model's GGUF where `make llama-cpp` has built it (the GGUF
is exported beside the model once), else by `transformers serve`; it prints which, and why (`space/local_server.py`).
Every process started here gets its own process group (`ko_radiology.processes`), and the whole group is stopped
(SIGTERM, then SIGKILL) on Ctrl-C, on SIGTERM, or when one of them dies, so nothing is left running. A busy port moves
to the next free one, with a message. `--run` serves the model (or `eval.stand_in_judge`, the rule-based judge) only
while one command runs, with `{endpoint}` and `{model}` filled in.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ko_radiology.cli import EXIT_FAILED, EXIT_OK, run_cli
from ko_radiology.hardware import default_dtype
from ko_radiology.model_loading import resolve_model
from ko_radiology.processes import (
    SERVER_START_TIMEOUT_S,
    Service,
    ServiceError,
    openai_url,
    pick_port,
    start,
    stop,
    wait_ready,
)
from space.local_server import SERVERS, LocalServer, choose_local_server

APP_PATH = Path(__file__).with_name("app.py")
APP_START_TIMEOUT_S = 120.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def stand_in_judge(port: int, log_dir: Path) -> Service:
    """`eval.stand_in_judge`: scores by text rules, answers at once; for pipelines that need a judge but no LLM."""
    command = [sys.executable, "-m", "eval.stand_in_judge", "--port", str(port)]
    ready_url = f"http://127.0.0.1:{port}/health"
    return Service("stand-in judge", command, {}, ready_url, log_dir / f"stand-in-judge-{port}.log")


def space_app(endpoint: str, model: str | None, port: int, log_dir: Path) -> Service:
    """`python space/app.py` with the endpoint backend, as a Hub Space runs it (settings from the environment)."""
    env = {
        "KO_RADIOLOGY_BACKEND": "endpoint",
        "KO_RADIOLOGY_ENDPOINT": endpoint,
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    if model:
        env["KO_RADIOLOGY_MODEL"] = model
    command = [sys.executable, str(APP_PATH)]
    return Service("Space", command, env, f"http://127.0.0.1:{port}/", log_dir / f"space-{port}.log")


def warm_up(endpoint: str, model: str) -> None:
    """One 1-token request, so the first visitor does not wait for the weights to load."""
    body = {"model": model, "messages": [{"role": "user", "content": "안녕하세요"}], "max_tokens": 1}
    answer = httpx.post(f"{endpoint}/chat/completions", json=body, timeout=SERVER_START_TIMEOUT_S, trust_env=False)
    answer.raise_for_status()


def start_server(server: Service, services: list[Service], timeout_s: float) -> str:
    """Start `server`, wait until it answers, and return its OpenAI base URL."""
    services.append(server)
    start(server)
    wait_ready(server, timeout_s)
    return openai_url(server)


def start_model_server(model_dir: str, args: argparse.Namespace, services: list[Service]) -> tuple[str, LocalServer]:
    """Choose the local server for `model_dir` (saying which and why), start and warm it up; return its OpenAI base
    URL and the choice."""
    if not (Path(model_dir) / "config.json").is_file():
        raise ServiceError(f"{model_dir} is not a model folder (no config.json). Pass the --out of training.export.")
    port = pick_port(args.server_port, "model server")
    gguf_dir = args.gguf_dir.resolve() if args.gguf_dir else None
    server = choose_local_server(Path(model_dir), args.server, gguf_dir, port, args.log_dir, args.dtype, args.slots)
    print(server.why, flush=True)
    print(f"Loading {server.model} (up to a few minutes on a busy CPU)...", flush=True)
    endpoint = start_server(server.service, services, SERVER_START_TIMEOUT_S)
    warm_up(endpoint, server.model)
    return endpoint, server


def local_model_dir(name_or_path: str) -> str:
    """The absolute folder of `--model` (or of `embedded:base`): `transformers serve` answers to that string only."""
    try:
        return str(Path(resolve_model(name_or_path)).resolve())
    except FileNotFoundError as error:
        raise ServiceError(str(error)) from None


def serve_until_interrupted(services: list[Service]) -> int:
    """Block until Ctrl-C/SIGTERM (exit 0) or until a service dies (exit 1, with its log)."""
    while True:
        for service in services:
            if service.process.poll() is not None:
                print(
                    f"{service.name} exited with {service.process.returncode}. End of its log:\n{service.log_tail()}",
                    file=sys.stderr,
                )
                return 1
        time.sleep(0.5)


def run_demo(args: argparse.Namespace, services: list[Service]) -> int:
    slots = None
    if args.stand_in_judge:
        model = "stand-in-judge"
        judge = stand_in_judge(pick_port(args.server_port, "stand-in judge"), args.log_dir)
        endpoint = start_server(judge, services, APP_START_TIMEOUT_S)
    elif args.model:
        endpoint, server = start_model_server(local_model_dir(args.model), args, services)
        model, slots = server.model, server.slots
    else:
        model, endpoint = args.endpoint_model, args.endpoint
    if args.run:
        command = [part.replace("{endpoint}", endpoint).replace("{model}", model or "") for part in args.run]
        return subprocess.run(command).returncode
    app = space_app(endpoint, model, pick_port(args.port, "Space"), args.log_dir)
    if slots:  # as many answers at once as the server decodes in parallel
        app.env["KO_RADIOLOGY_CONCURRENCY_LIMIT"] = str(slots)
    services.append(app)
    start(app)
    wait_ready(app, APP_START_TIMEOUT_S)
    url = app.ready_url
    print(
        f"\nKo-Radiology-GPT is running: {url}\n  model: {model} via {endpoint}\n"
        "Ctrl-C stops everything this started.",
        flush=True,
    )
    return serve_until_interrupted(services)


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m space.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="model folder (training.export --out) or embedded:base to serve locally")
    source.add_argument("--endpoint", help="an OpenAI-compatible base URL to use instead (e.g. http://host:8080/v1)")
    source.add_argument("--stand-in-judge", action="store_true", help="with --run: serve eval.stand_in_judge instead")
    parser.add_argument("--endpoint-model", help="model name to send to --endpoint (vLLM: the --lora-modules name)")
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
        help="Space port (default 7860 or $GRADIO_SERVER_PORT; the next free one if busy)",
    )
    parser.add_argument("--server-port", type=int, default=8000, help="model server port (the next free one if busy)")
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default="auto",
        help="local server for --model: llama.cpp's llama-server where built, else transformers serve (%(default)s: "
        "llama.cpp when it can, saying why not)",
    )
    parser.add_argument(
        "--gguf-dir",
        type=Path,
        help="llama.cpp: the model's GGUF folder (training.export --format gguf --out); default MODEL-gguf beside "
        "--model, exported there when missing or older than the model",
    )
    parser.add_argument("--slots", type=int, default=4, help="llama.cpp: answers decoded at once (%(default)s)")
    parser.add_argument(
        "--dtype", default=default_dtype("serve"), help="weights dtype for transformers serve (%(default)s)"
    )
    parser.add_argument("--log-dir", type=Path, default=Path("out/demo/logs"), help="where the processes log")
    parser.add_argument(
        "--run",
        metavar="-- COMMAND ...",
        help="last option: serve only while COMMAND runs, with {endpoint} and {model} filled in",
    )
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[argv.index("--run") + 1 :] if "--run" in argv else None  # taken whole, "--" and all
    args = parser.parse_args(argv[: argv.index("--run")] if command is not None else argv)
    if command is not None:
        args.run = command[1:] if command[:1] == ["--"] else command
        if not args.run or args.endpoint:
            parser.error("--run needs --model or --stand-in-judge, and a command after it.")
    elif args.stand_in_judge:
        parser.error("--stand-in-judge serves a judge for --run COMMAND, not for the Space.")
    if args.endpoint and not args.endpoint_model:
        parser.error("--endpoint needs --endpoint-model: the model name the server serves (vLLM: the adapter name).")
    if not args.model and (args.server != "auto" or args.gguf_dir):
        parser.error("--server and --gguf-dir choose how --model is served; pass --model MODEL_DIR with them.")
    if args.slots < 1:
        parser.error(f"--slots {args.slots}: pass 1 or more parallel slots.")
    return args


def demo_command(argv: list[str]) -> int:
    args = parse_args(argv)
    for signum in STOP_SIGNALS:  # also SIGINT: a shell starts background jobs with SIGINT ignored
        signal.signal(signum, _raise_keyboard_interrupt)
    services: list[Service] = []
    try:
        return run_demo(args, services)
    except KeyboardInterrupt:
        print("\nStopping...", flush=True)
        return EXIT_OK
    except (ServiceError, httpx.HTTPError) as error:
        print(f"Demo failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        for signum in STOP_SIGNALS:  # a second Ctrl-C must not cut the cleanup short
            signal.signal(signum, signal.SIG_IGN)
        for service in reversed(services):
            stop(service)


def main(argv: list[str] | None = None) -> int:
    return run_cli(demo_command, argv)


if __name__ == "__main__":
    sys.exit(main())
