"""Run the demo: a local OpenAI-compatible server on a merged model and the Space wired to it, until Ctrl-C.

```bash
python -m space.demo --model out/adapters/KEY/merged          # what `make demo` runs after training and merging
KO_RADIOLOGY_ALLOWED_HOSTS=10.0.0.5 python -m space.demo \
    --endpoint http://10.0.0.5:8080/v1 --endpoint-model ko-radiology   # the Space only, against your own endpoint
python -m space.demo --model embedded:base --run -- \
    python -m eval.judge ... --judge-base-url {endpoint} --judge-model {model}
python -m space.demo --stand-in-judge --run -- python -m eval.judge ... --judge-base-url {endpoint}
```

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
    model_server,
    openai_url,
    pick_port,
    start,
    stop,
    wait_ready,
)

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


def start_model_server(model_dir: str, args: argparse.Namespace, services: list[Service]) -> str:
    """Start and warm up the local server on `model_dir`; return its OpenAI base URL."""
    if not (Path(model_dir) / "config.json").is_file():
        raise ServiceError(f"{model_dir} is not a model folder (no config.json). Pass the --out of training.export.")
    print(f"Loading {model_dir} (up to a few minutes on a busy CPU)...", flush=True)
    server = model_server(model_dir, pick_port(args.server_port, "model server"), args.log_dir, args.dtype)
    endpoint = start_server(server, services, SERVER_START_TIMEOUT_S)
    warm_up(endpoint, model_dir)
    return endpoint


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
    if args.stand_in_judge:
        model = "stand-in-judge"
        judge = stand_in_judge(pick_port(args.server_port, "stand-in judge"), args.log_dir)
        endpoint = start_server(judge, services, APP_START_TIMEOUT_S)
    elif args.model:
        model = local_model_dir(args.model)
        endpoint = start_model_server(model, args, services)
    else:
        model, endpoint = args.endpoint_model, args.endpoint
    if args.run:
        command = [part.replace("{endpoint}", endpoint).replace("{model}", model or "") for part in args.run]
        return subprocess.run(command).returncode
    app = space_app(endpoint, model, pick_port(args.port, "Space"), args.log_dir)
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
    parser.add_argument("--endpoint-model", help="model name to send to --endpoint (TGI: the LoRA adapter name)")
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
        help="Space port (default 7860 or $GRADIO_SERVER_PORT; the next free one if busy)",
    )
    parser.add_argument("--server-port", type=int, default=8000, help="model server port (the next free one if busy)")
    parser.add_argument("--dtype", default=default_dtype("serve"), help="weights dtype for --model (%(default)s)")
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
        parser.error("--endpoint needs --endpoint-model: the model name the server serves (TGI: the adapter name).")
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
