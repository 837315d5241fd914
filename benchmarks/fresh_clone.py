"""From a fresh clone to the chat's prompt: what a newcomer's first `bin/chat` costs, for one or more commits.

For each commit (side by side, one after the other, in one run): `git clone` this repository into a
temporary folder, check out the commit, and run `bin/chat --db sqlite:///TMP/first.db` in a
pseudo-terminal (pexpect) until the prompt ``you>`` appears; then send one message and wait for
the reply, and leave with Ctrl-D. It records the seconds to the prompt and to the first reply,
the size of `.venv`, and the lines the install printed (warnings included). Pip's own cache is
shared (the project's dependencies come from it, as on a machine that installed them before);
nothing of the project itself is cached between clones.

Run:  .venv/bin/python benchmarks/fresh_clone.py COMMIT [COMMIT ...] [--output FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import _common  # first: the checkout importable, native logs silenced by _common.run
import pexpect

REPO = _common.REPO
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\r")


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def first_run(commit: str, work: Path, timeout: float) -> dict:
    clone = work / f"clone-{commit[:8]}"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", commit], check=True)
    # The shipped model is tracked; a clone has it. Nothing else of the checkout here is copied.
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CHATBOT_HOME", "CHATBOT_MODEL")}
    env["TERM"] = "xterm"
    started = time.monotonic()
    chat = pexpect.spawn(
        "bin/chat",
        ["--db", f"sqlite:///{work / ('first-' + commit[:8] + '.db')}"],
        cwd=str(clone),
        env=env,
        encoding="utf-8",
        timeout=timeout,
    )
    chat.expect("you>")
    prompt = time.monotonic() - started
    printed = ESCAPES.sub("", chat.before)
    chat.sendline("hi! how are you today?")
    chat.expect("bot>")
    chat.expect("you>")
    reply = time.monotonic() - started
    answer = ESCAPES.sub("", chat.before).strip()
    chat.sendeof()
    chat.expect(pexpect.EOF)
    venv = clone / ".venv"
    lines = [line for line in printed.splitlines() if line.strip()]
    return {
        "commit": commit,
        "seconds_to_prompt": round(prompt, 1),
        "seconds_to_first_reply": round(reply, 1),
        "venv_megabytes": round(folder_bytes(venv) / 1e6),
        "printed_before_prompt": lines,
        "warning_lines": [line for line in lines if "warning" in line.lower()],
        "reply": answer,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commits", nargs="+", help="commits to compare, e.g. an older one and HEAD")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for each step (default 900)")
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fresh-clone-"))
    try:
        runs = [
            first_run(subprocess.check_output(["git", "-C", str(REPO), "rev-parse", c], text=True).strip(), work, args.timeout)
            for c in args.commits
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}", "runs": runs}
    text = json.dumps(result, indent=2, ensure_ascii=False)
    if args.output:
        args.output.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    _common.run(main)  # the clone's `bin/chat` runs on a pseudo-terminal: what it prints is read, never shown
