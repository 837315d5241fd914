"""Serve a model you trained over HTTP and talk to it with the OpenAI client (needs `pip install -e '.[serve]'`
and `pip install openai`).

    python examples/serve_your_model.py --model storage/models/mine [--port 8000]

It starts `chatbot serve` (on 127.0.0.1 only: without --api-key-file nothing else can reach it), waits
until /health answers, sends two messages of one conversation through the OpenAI-compatible API, reads the
stored conversation back from the conversation API, and stops the server (which finishes what it was doing).
"""

import argparse
import signal
import socket
import subprocess
import sys
import time

import httpx
import openai


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="a model directory (default: the shipped model)")
    parser.add_argument("--db", help="a SQLAlchemy URL (default: the server's own database)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    args = parser.parse_args()

    port = args.port or free_port()
    command = [sys.executable, "-m", "chatbot", "serve", "--port", str(port)]
    command += [] if args.model == "default" else ["--model", args.model]
    command += ["--db", args.db] if args.db else []
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            if server.poll() is not None:
                sys.exit(f"chatbot serve stopped: {server.stderr.read().strip()}")
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused on 127.0.0.1")
        model = client.models.list().data[0].id
        messages = [{"role": "user", "content": "hi! what are you studying?"}]
        first = client.chat.completions.create(model=model, messages=messages, seed=1)
        messages += [{"role": "assistant", "content": first.choices[0].message.content}]
        messages += [{"role": "user", "content": "what do you like about it?"}]
        second = client.chat.completions.create(model=model, messages=messages, seed=2)
        for message in messages[:2] + [messages[2], {"role": "assistant", "content": second.choices[0].message.content}]:
            print(f"{message['role']:>9}> {message['content']}")
        conversation = second.model_extra["conversation_id"]
        stored = httpx.get(f"{base}/v1/conversations/{conversation}/turns").json()["data"]
        print(f"model {model}: conversation {conversation} holds {len(stored)} turns on the server")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
