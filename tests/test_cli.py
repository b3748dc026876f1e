"""The command line's conventions: one --output spelling, defaults in --help, logging options
on either side of the sub-command, cuda:N devices."""

from __future__ import annotations

import logging

import pytest

from tbotan import cli
from tbotan import config as cfgmod


def parse(*argv):
    return cli.build_parser().parse_args([str(a) for a in argv])


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--train", "a.h5", "{flag}", "m"],
        ["predict", "--model", "m.pt", "--dataset", "a.h5", "{flag}", "p.h5"],
        ["figures", "--run-dir", "r", "{flag}", "out"],
    ],
    ids=lambda argv: argv[0],
)
def test_output_is_the_one_spelling_and_out_is_still_accepted(argv, capsys):
    new = parse(*[a.replace("{flag}", "--output") for a in argv])
    assert capsys.readouterr().err == ""
    old = parse(*[a.replace("{flag}", "--out") for a in argv])
    assert old.out == new.out and new.out in ("m", ["p.h5"], "out")
    assert "--out is deprecated and will be removed; use --output" in capsys.readouterr().err


def test_a_required_output_is_still_required(capsys):
    with pytest.raises(SystemExit) as exc:
        parse("train", "--train", "a.h5")
    assert exc.value.code == 2
    assert "--output" in capsys.readouterr().err


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        parse("train", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "seed of this training (default: 0)" in text
    assert "(default: None)" not in text and "(default: False)" not in text


@pytest.mark.parametrize(
    "argv, level",
    [
        ([], logging.WARNING),
        (["-v"], logging.INFO),
        (["--log-level", "debug"], logging.DEBUG),
        (["--log-level", "error"], logging.ERROR),
    ],
)
def test_logging_options_before_or_after_the_sub_command(argv, level):
    stage = ["quench", "--temperature", "0.44", "--equilibrium", "e.gsd", "--output", "q.gsd"]
    assert cli.log_level(parse(*argv, *stage)) == level
    assert cli.log_level(parse(*stage, *argv)) == level


def test_cuda_devices_by_index_pass_the_schema():
    config = cfgmod.validate({"engine": {"device": "cuda:1"}, "training": {"device": "cuda:0"}})
    assert (config["engine"]["device"], config["training"]["device"]) == ("cuda:1", "cuda:0")
    for bad in ("cuda:", "cuda:x", "gpu"):
        with pytest.raises(cfgmod.ConfigError, match="device"):
            cfgmod.validate({"engine": {"device": bad}})


def test_the_exit_codes_are_documented():
    from workflow_helpers import ROOT

    readme = (ROOT / "README.md").read_text()
    for code in ("`0`", "`1`", "`2`", "`128 + N`"):
        assert code in readme, code


BUG_SCRIPT = """
import sys
import numpy as np
import tbotan.labels.chunks
from tbotan import cli
from tbotan.errors import FileFormatError

def assemble_splits(config, T, chunks):
    if "{kind}" == "bug":  # what a NumPy shape bug inside the library raises
        return np.zeros(3) + np.zeros(4)
    raise FileFormatError("a.h5 is not a label chunk of `tbotan iso`")

tbotan.labels.chunks.assemble_splits = assemble_splits
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("kind", ["bug", "input"])
def test_a_value_error_inside_the_library_is_a_bug_not_bad_input(tmp_path, kind):
    """Only the project's input errors (tbotan.errors.InputError) are one-line messages with
    exit status 2; a ValueError from inside the library (here a NumPy broadcast error) is a
    bug: exit status 1 and its traceback on stderr."""
    import subprocess
    import sys

    from workflow_helpers import ROOT

    config = tmp_path / "config.yaml"
    config.write_text("temperatures:\n  - {T: 1.2, tau_alpha: 0.78, train: true}\n")
    output = tmp_path / "train.h5"
    proc = subprocess.run(
        [sys.executable, "-c", BUG_SCRIPT.replace("{kind}", kind), "dataset", "--config",
         str(config), "--temperature", "1.2", "--split", "train", "--chunks", "a.h5",
         "--output", str(output)],
        capture_output=True, text=True, env={"PYTHONPATH": str(ROOT / "src")}, timeout=300,
    )  # fmt: skip
    if kind == "bug":
        assert proc.returncode == 1, proc.stderr
        assert "Traceback (most recent call last)" in proc.stderr
        assert "ValueError: operands could not be broadcast" in proc.stderr
        assert "assemble_splits" in proc.stderr  # the traceback reaches the failing function
        assert ": error: " not in proc.stderr
    else:
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert proc.stderr.strip() == (
            "tbotan dataset: error: a.h5 is not a label chunk of `tbotan iso`"
        )
    assert not output.exists()


def test_only_input_errors_are_described_in_one_line():
    from tbotan.errors import ConfigError, FileFormatError, InputError, MissingInputError

    for error in (InputError, ConfigError, FileFormatError, MissingInputError, cli.UserError):
        assert cli.describe_error(error("what, where")) == "what, where"
    for bug in (ValueError, FileNotFoundError, KeyError, TypeError, IndexError, RuntimeError):
        assert cli.describe_error(bug("what, where")) is None
