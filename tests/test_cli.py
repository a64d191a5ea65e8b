"""The command line as a user meets it: every option's help states its default (or that it is
required / a flag), ``uehead --version`` names the stack, ``uehead evaluate --data`` takes a
labelled file (names or ids) and names the known labels for an unknown one."""
from __future__ import annotations

import argparse
import json

import pytest

from uehead import __version__
from uehead.cli import build_parser, main


def _verbs():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


@pytest.mark.parametrize("verb", sorted(_verbs()))
def test_every_option_has_one_help_line_with_its_default(verb):
    for action in _verbs()[verb]._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help, f"uehead {verb} {name} has no help"
        if action.option_strings:
            text = action.help.lower()
            assert "default" in text or "required" in text, f"uehead {verb} {name}: no default in {action.help!r}"
            if action.required:
                assert "(required)" in text, f"uehead {verb} {name} is required but its help does not say so"


def test_help_of_predict_says_what_matters(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("(default: 32)", "format follows the suffix", "no row is repeated or skipped",
                   "pip install 'uehead[ray]'", "--scores", "--distances", "--risk", "--coverage"):
        assert phrase in text, phrase


def test_version_prints_the_version_and_the_stack(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"uehead {__version__}\nPython ") and "numpy " in out and "onnxruntime " in out


def test_evaluate_takes_a_labelled_file_and_names_the_known_labels(tmp_path, tiny_bundle_dir, capsys):
    pytest.importorskip("sklearn")
    pairs = [("good fun", "class_1"), ("bad dull", "class_0"), ("fine", 1), ("meh", 0)]
    rows = [{"review": t, "y": y} for t, y in pairs]
    data = tmp_path / "labelled.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows * 5), encoding="utf-8")
    out = tmp_path / "metrics.json"
    assert main(["evaluate", str(tiny_bundle_dir), "--data", str(data), "--text-column", "review",
                 "--label-column", "y", "--json", str(out), "--no-plots"]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["n"] == 20
    data.write_text(json.dumps({"review": "x", "y": "great"}) + "\n", encoding="utf-8")
    assert main(["evaluate", str(tiny_bundle_dir), "--data", str(data), "--text-column", "review",
                 "--label-column", "y", "--json", str(out), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "unknown label name 'great'" in err and "['class_0', 'class_1']" in err


def test_step_lines_number_the_steps_on_stderr(capsys):
    from uehead.steps import StepLines

    steps = StepLines("uehead export", 2)
    steps.start("graph export")
    steps.note("backbone")
    steps.start("validation")
    steps.done("wrote B")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("uehead export [1/2] graph export ...") and lines[1] == "    backbone"
    assert lines[2].startswith("uehead export [2/2] validation ...") and lines[3].startswith("uehead export: wrote B in")
    StepLines("x", 1, enabled=False).start("quiet")
    assert capsys.readouterr().err == ""
