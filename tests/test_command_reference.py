"""The README's command reference against the parser: every flag it names exists on that command, and every
flag a command has is in its row, except the model and training settings generated from the config
dataclasses (`chatbot.config.setting`), which `chatbot train --help` lists and the row may name."""

from __future__ import annotations

import argparse
import re

import pytest
from serving import REPO

from chatbot.cli.parser import build_parser
from chatbot.config import ModelConfig, TrainConfig, flag_fields
from chatbot.inference.decoding import add_decoding_arguments

SETTINGS = {prefix + f.name.replace("_", "-") for cls in (ModelConfig, TrainConfig) for f in flag_fields(cls) for prefix in ("--", "--no-")}


def _rows() -> dict[str, str]:
    """README rows: `chatbot WORDS …` -> the command cell."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    table = text.split("## Command reference", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in table.splitlines():
        match = re.match(r"\| `(chatbot [^`]+)`", line)
        if match:
            cell = match[1]
            words = re.match(r"chatbot ((?:[a-z]+ ?)+)", cell)[1].split()
            rows[" ".join(words[:2] if words[0] == "corpus" else words[:1])] = cell
    return rows


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings if flag.startswith("--") and flag != "--help"}


def _subparser(parser: argparse.ArgumentParser, words: list[str]) -> argparse.ArgumentParser:
    for word in words:
        choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
        parser = choices[word]
    return parser


def _decoding_flags() -> set[str]:
    probe = argparse.ArgumentParser()
    add_decoding_arguments(probe)
    return _flags(probe)


CORPUS_READING = {"--format", "--encoding", "--convokit-paths", "--skip-malformed"}  # cli._add_corpus_reading


ROWS = _rows()


def test_the_reference_has_a_row_for_every_command():
    parser = build_parser()
    commands = set(next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices)
    named = {key.split()[0] for key in ROWS}
    assert named == commands


@pytest.mark.parametrize("command", sorted(ROWS))
def test_each_row_names_real_flags_and_every_flag(command):
    cell = ROWS[command]
    parser = _subparser(build_parser(), command.split())
    has = _flags(parser)
    if command == "sessions":  # one row for the actions: their flags and the group's
        for action in ("list", "show", "rename", "delete", "export"):
            has |= _flags(_subparser(parser, [action]))
    named = set(re.findall(r"--[a-z0-9][a-z0-9-]*", cell))
    assert named - has == set(), f"the README names flags `chatbot {command}` does not have"
    expected = has - SETTINGS
    if "[decoding flags]" in cell:
        expected -= _decoding_flags()
    if "[corpus reading flags]" in cell:
        expected -= CORPUS_READING
    if command == "sessions":
        expected &= _flags(parser)  # the actions' own flags are in the Replaying section
    assert expected - named == set(), f"`chatbot {command}` has flags the README's row does not name"
