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
