"""The documentation test: every shell block in README.md and docs/*.md runs as written (issue 27).

Sybil (a well-kept documentation-testing library) finds the fenced blocks; this module runs them:

- ```` ```bash ```` blocks: each command (``\\`` continuations joined) runs in bash and must exit 0.
- ```` ```console ```` blocks: each ``$ COMMAND`` runs; the lines shown after it must appear in its output
  (stdout and stderr), in order, where ``…`` stands for any text within a line and other lines of output
  may come between. A shown ``chatbot: error:`` line means the command must fail; a command shown without
  output must exit 0 (one shown with output may exit otherwise, as `corpus validate` does on a bad record).
  A ``$ … chat …`` command gets the transcript's ``you> MESSAGE`` lines on its standard input, so the
  README's chat is replayed, reply for reply, by the seed it shows.
- ```` ```python ```` blocks run as scripts.
- A command (or a whole block, from a comment on its first line) marked ``[not run: REASON]`` or
  ``[not run in CI: REASON]`` is not run: a GPU, a 40-minute measurement, a host that does not exist. Its
  ``chatbot`` commands are still parsed by the real argument parser, so a renamed flag fails here too.
- A block in another language, or none, must not look like shell (a line starting ``$ ``, ``bin/``,
  ``chatbot ``, ``pip `` or ``python ``): tag it, so it is run.

Each document runs in its own sandbox, in order, as a reader would type it: a folder that links the
checkout's files (``bin/``, ``corpora/``, ``.venv`` …), with its own ``storage/`` holding only the shipped
model, ``.venv/bin`` first on PATH (an activated virtualenv), and ``$CHATBOT_TRAIN_LIMITS`` (documented in
docs/training.md) capping every training run at seconds. ``chatbot serve`` runs in the background until the
document ends, and the next block waits for its ``/health``. Paths under the sandbox read as relative.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shlex
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sybil import Document, Example
from sybil.parsers.markdown import CodeBlockParser

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
LINKED = ["bin", "chatbot", "corpora", "benchmarks", "examples", "docs", "tests", "pyproject.toml", "README.md", "CHANGELOG.md", ".venv"]
# Seconds, not minutes: the budget of every training run the documents show (docs/training.md).
TRAIN_LIMITS = "max_minutes=0.05,max_dialogues=40,epochs=1,vocabulary_size=400,length_groups=1"
COMMAND_TIMEOUT = 300  # seconds per command
NOT_RUN = re.compile(r"\[not run(?: in CI)?: [^\]]+\]")
SHELL_LOOKING = re.compile(r"^(\$ |bin/|chatbot |pip |python )")
SERVER_URL = "http://127.0.0.1:8000"  # where `chatbot serve` listens as the documents write it
LANGUAGES = ("bash", "console", "python")


@dataclass
class Block:
    language: str
    line: int  # of the opening fence, 1-based
    source: str


def blocks(document: str) -> list[Block]:
    """The document's fenced blocks in the languages run here, found by Sybil's markdown lexer."""
    found: list[Block] = []

    def keep(language: str):
        def evaluate(example: Example) -> None:
            found.append(Block(language, example.line, str(example.parsed)))

        return evaluate

    parsed = Document.parse(str(ROOT / document), *(CodeBlockParser(language, keep(language)) for language in LANGUAGES))
    for example in parsed.examples():
        example.evaluate()
    return sorted(found, key=lambda block: block.line)


def all_fences(document: str) -> list[tuple[int, str, str]]:
    """Every fenced block: (line of the fence, its info string, its text)."""
    text = (ROOT / document).read_text()
    return [
        (text[: m.start()].count("\n") + 1, m.group(1).strip(), m.group(2))
        for m in re.finditer(r"^```([^\n`]*)\n(.*?)^```", text, re.S | re.M)
    ]


def commands(source: str) -> list[str]:
    """The block's commands: continuation lines joined, blank and comment-only lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", source)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def chatbot_argv(command: str) -> list[str] | None:
    """The arguments after `chatbot`/`bin/chatbot` in `command` (leading VAR=value settings skipped), or None."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        return None
    while words and re.match(r"^[A-Z_]+=", words[0]):
        words.pop(0)
    if words and words[0] in ("chatbot", "bin/chatbot"):
        return words[1:]
    return None


def parse_error(command: str) -> str | None:
    """What the real parser says about a `chatbot` command it rejects (None: parsed, or not a `chatbot` command,
    or a synopsis with placeholders: `…`, `[--flag N]`, `A|B`, an upper-case metavar such as ID)."""
    from chatbot.cli.parser import build_parser

    argv = chatbot_argv(command)
    if argv is None or any(w in ("…", "...") or "|" in w or w.startswith("[") or re.fullmatch(r"[A-Z]+\.*", w) for w in argv):
        return None
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit as exit_:
        if exit_.code:
            return stderr.getvalue().strip().splitlines()[-1]
    return None


@dataclass
class Sandbox:
    """A reader's checkout: the project's files linked, its own storage/, an activated .venv."""

    path: Path
    servers: list[subprocess.Popen] = field(default_factory=list)

    @classmethod
    def make(cls, path: Path) -> Sandbox:
        # The documents' `bin/chat` runs bin/setup, which would reinstall the package into the shared .venv from
        # this sandbox (and leave .venv pointing at a deleted folder) if pyproject.toml changed since the install.
        stamp = f".installed-{{}}-{hashlib.sha256((ROOT / 'pyproject.toml').read_bytes()).hexdigest()[:16]}"
        if not any((ROOT / ".venv" / stamp.format(what)).exists() for what in ("chat", "test")):
            pytest.fail("pyproject.toml changed since .venv was set up: run bin/setup test (or bin/test) first")
        for name in LINKED:
            if (ROOT / name).exists():
                (path / name).symlink_to(ROOT / name)
        (path / "storage" / "models").mkdir(parents=True)
        (path / "storage" / "models" / "default").symlink_to(ROOT / "storage" / "models" / "default")
        return cls(path)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHATBOT_") or k == "CHATBOT_TEST_POSTGRES"}
        env.update(
            PATH=f"{self.path / '.venv' / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
            VIRTUAL_ENV=str(self.path / ".venv"),
            CHATBOT_TRAIN_LIMITS=TRAIN_LIMITS,
            PYTHONUNBUFFERED="1",
            TERM="dumb",
        )
        return env

    def run(self, command: str, stdin: str = "") -> tuple[int, str]:
        """Run `command` in bash here; (exit status, stdout and stderr together, sandbox paths made relative)."""
        if re.search(r"\bchatbot serve\b", command):
            return self.serve(command)
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=self.path,
            env=self.env(),
            input=stdin,
            capture_output=False,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        return done.returncode, self.relative(done.stdout)

    def serve(self, command: str) -> tuple[int, str]:
        """Start a `chatbot serve` command in the background and wait until it answers /health."""
        log = self.path / f"serve-{len(self.servers)}.log"
        with log.open("w") as out:
            server = subprocess.Popen(
                ["bash", "-c", f"exec {command}"],
                cwd=self.path,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.servers.append(server)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if server.poll() is not None:
                return server.returncode or 1, log.read_text()
            try:
                with urllib.request.urlopen(f"{SERVER_URL}/health", timeout=2) as response:
                    if response.status == 200:
                        return 0, log.read_text()
            except OSError:
                time.sleep(0.5)
        return 1, log.read_text() + f"\n(not answering {SERVER_URL}/health after 180 s)"

    def close(self) -> None:
        for server in self.servers:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGTERM)
                try:
                    server.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(server.pid, signal.SIGKILL)

    def relative(self, text: str) -> str:
        return text.replace(f"{self.path}/", "").replace(str(ROOT / "storage" / "models" / "default"), "storage/models/default")


def shown_lines_missing(shown: str, output: str) -> list[str]:
    """The shown lines not found, in order, among the output's lines (`…` matches any text in a line)."""
    lines = [line.rstrip() for line in output.splitlines()]
    missing, at = [], 0
    for want in (line.rstrip() for line in shown.splitlines()):
        if not want.strip() or want.strip() in ("...", "…"):
            continue
        pattern = re.compile(".*".join(re.escape(part) for part in want.split("…")) + r"\Z")
        for index in range(at, len(lines)):
            if pattern.match(lines[index]):
                at = index + 1
                break
        else:
            missing.append(want)
    return missing


def console_steps(source: str) -> list[tuple[str, str]]:
    """A console block as (command, the output shown after it)."""
    steps: list[tuple[str, str]] = []
    for line in source.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], ""))
        elif steps:
            steps[-1] = (steps[-1][0], steps[-1][1] + line + "\n")
    return steps


def check_block(sandbox: Sandbox, document: str, block: Block) -> list[str]:
    """Run one block; the problems found, each naming the document, line and command."""
    where = f"{document}:{block.line}"
    problems: list[str] = []
    first = block.source.lstrip().splitlines()[0] if block.source.strip() else ""
    skipped_block = first.startswith("#") and NOT_RUN.search(first)
    if block.language == "python":
        if not skipped_block:
            status, output = sandbox.run(f"python - <<'PYTHON'\n{block.source}PYTHON")
            if status:
                problems.append(f"{where}: the Python block failed (exit {status}):\n{output[-3000:]}")
        return problems
    steps = [(c, "") for c in commands(block.source)] if block.language == "bash" else console_steps(block.source)
    for command, shown in steps:
        if skipped_block or NOT_RUN.search(command):
            error = parse_error(command)
            if error:
                problems.append(f"{where}: `{command}` (not run) does not parse: {error}")
            continue
        stdin = "".join(line[5:] + "\n" for line in shown.splitlines() if line.startswith("you> ") and line[5:].strip())
        status, output = sandbox.run(command, stdin=stdin if re.search(r"\bchat\b", command) and not re.search(r"[|<]", command) else "")
        must_fail = any(line.startswith("chatbot: error:") for line in shown.splitlines())
        if (must_fail and status == 0) or (status != 0 and not must_fail and not shown.strip()):
            expected = "to fail" if must_fail else "to succeed"
            problems.append(f"{where}: `{command}` was expected {expected}, exit {status}:\n{output[-3000:]}")
            continue
        missing = shown_lines_missing(shown, output)
        if missing:
            problems.append(
                f"{where}: `{command}` printed otherwise than shown; not found in order:\n  "
                + "\n  ".join(missing)
                + f"\noutput:\n{output[-3000:]}"
            )
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("document", DOCUMENTS)
def test_the_documents_commands_run_as_written(document, tmp_path):
    sandbox = Sandbox.make(tmp_path)
    problems: list[str] = []
    try:
        for block in blocks(document):
            problems += check_block(sandbox, document, block)
    finally:
        sandbox.close()
    assert not problems, "\n\n".join(problems)


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_shell_block_is_tagged_so_it_is_run(document):
    untagged = [
        f"{document}:{line} (```{info}): {next(x for x in text.splitlines() if SHELL_LOOKING.match(x))}"
        for line, info, text in all_fences(document)
        if info.split()[:1] not in (["bash"], ["console"], ["python"]) and any(SHELL_LOOKING.match(x) for x in text.splitlines())
    ]
    assert not untagged, "shell commands in a block the documentation test does not run; tag it ```bash or ```console:\n" + "\n".join(
        untagged
    )


def test_a_not_run_command_is_still_parsed():
    """A renamed flag fails a command that is not run, too."""
    assert parse_error("chatbot train --corpus chitchat --epochs 4 --out m") is None
    assert "unrecognized arguments: --epoks" in (parse_error("chatbot train --corpus chitchat --epoks 4 --out m") or "")
    assert parse_error("chatbot sessions export ID...|--all [--format jsonl|md|txt]") is None  # a synopsis


def test_shown_output_is_matched_in_order_with_ellipses():
    output = "progress 1/3\ntrained 1 epoch(s) in 0.1 min; best validation perplexity 90.10\nbye\n"
    assert shown_lines_missing("trained 1 epoch(s) in … min; best validation perplexity …\nbye\n", output) == []
    assert shown_lines_missing("bye\ntrained …\n", output) == ["trained …"]
    assert shown_lines_missing("trained 2 epoch(s) in … min…\n", output) == ["trained 2 epoch(s) in … min…"]
