"""Every paper figure draws from a tiny synthetic run; absent inputs skip; `tbotan figures`."""

from __future__ import annotations

import json

import pytest
from matplotlib.figure import Figure

from synthetic_run import MODELS, make_synthetic_run
from tbotan.analysis import figures, runs
from tbotan.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = make_synthetic_run(tmp_path_factory.mktemp("figures"))
    return runs.analyse_run(run_dir, runs.load_run_config(run_dir / "config.yaml"))


@pytest.fixture(scope="module")
def main_only_run(tmp_path_factory):
    """Only the main model (two seeds), metrics without validation losses."""
    run_dir = make_synthetic_run(
        tmp_path_factory.mktemp("main-only"), n_test=2, models=MODELS[:2], validation_losses=False
    )
    return runs.analyse_run(run_dir, runs.load_run_config(run_dir / "config.yaml"))


@pytest.mark.parametrize("name", list(figures.FIGURES))
def test_every_figure_draws_and_writes_a_non_empty_file(run, name, tmp_path):
    fig = figures.FIGURES[name](run)
    assert isinstance(fig, Figure)
    (path,) = figures.save(fig, tmp_path / name, ["png"])
    assert path.name == f"{name}.png" and path.stat().st_size > 10_000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure_names_follow_the_paper():
    """The paper's Figs. 2–15 in its order, then ours (16: P(T_pred/T_MD) per seed)."""
    numbers = [int(name[3:5]) for name in figures.FIGURES]
    assert numbers == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]


@pytest.mark.parametrize(
    "name, reason",
    [
        ("fig11_sb_lambda", "two λ_g"),
        ("fig12_t_pred_lambda", "two λ_g"),
        ("fig13_cb_maps_ablation", "two input variants"),
        ("fig14_sb_ablation", "two input variants"),
        ("fig15_t_pred_ablation", "two input variants"),
    ],
)
def test_figures_without_their_models_are_skipped_with_the_reason(main_only_run, name, reason):
    with pytest.raises(figures.FigureSkipped, match=reason):
        figures.FIGURES[name](main_only_run)


def test_the_per_seed_figure_needs_two_seeds_and_draws_a_panel_per_seed(main_only_run, tmp_path):
    fig = figures.fig16_t_pred_distribution_per_seed(main_only_run)
    assert [ax.get_title() for ax in fig.axes] == ["seed 0", "seed 1"]
    one_seed = make_synthetic_run(tmp_path, n_test=2, models=MODELS[:1], validation_losses=False)
    run = runs.analyse_run(one_seed, runs.load_run_config(one_seed / "config.yaml"))
    with pytest.raises(figures.FigureSkipped, match="two seeds"):
        figures.fig16_t_pred_distribution_per_seed(run)


def test_loss_figure_without_validation_losses_still_draws(main_only_run, tmp_path):
    (path,) = figures.save(figures.fig06_loss(main_only_run), tmp_path / "fig06", ["png"])
    assert path.stat().st_size > 10_000


def test_figures_without_metrics_or_a_high_temperature_are_skipped(main_only_run):
    saved = main_only_run.metrics
    main_only_run.metrics = {}
    try:
        with pytest.raises(figures.FigureSkipped, match="metrics.csv"):
            figures.fig06_loss(main_only_run)
    finally:
        main_only_run.metrics = saved
    # with T = 0.64 removed from the run, every temperature belongs to Figs. 2-3
    saved_t = main_only_run.temperatures
    main_only_run.temperatures = [t for t in saved_t if t.label != "0.64"]
    try:
        with pytest.raises(figures.FigureSkipped, match="highest untrained"):
            figures.fig08_cb_maps_high_t(main_only_run)
        with pytest.raises(figures.FigureSkipped, match="highest untrained"):
            figures.fig09_sb_high_t(main_only_run)
    finally:
        main_only_run.temperatures = saved_t


def test_cli_writes_figures_and_summaries(tmp_path, capsys, monkeypatch):
    # two figures stand for all (each is drawn above): one drawn, one skipped
    subset = {k: figures.FIGURES[k] for k in ("fig04_t_pred", "fig12_t_pred_lambda")}
    monkeypatch.setattr(figures, "FIGURES", subset)
    run_dir = make_synthetic_run(tmp_path, n_test=2, models=MODELS[:2])
    assert main(["figures", "--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "written fig04_t_pred" in out and "skipped fig12_t_pred_lambda" in out
    figdir = run_dir / "analysis" / "figures"
    for suffix in ("png", "pdf"):  # analysis.figure_formats
        assert (figdir / f"fig04_t_pred.{suffix}").stat().st_size > 0
    summary = json.loads((run_dir / "analysis" / "summary.json").read_text())
    assert summary["figures"]["fig04_t_pred"]["status"] == "written"
    assert "two λ_g" in summary["figures"]["fig12_t_pred_lambda"]["reason"]
    assert "| T | trained |" in (run_dir / "analysis" / "summary.md").read_text()


def test_cli_without_any_drawable_figure_exits_1(tmp_path, capsys):
    run_dir = make_synthetic_run(tmp_path, n_test=2, models=())
    assert main(["figures", "--run-dir", str(run_dir), "--out", str(tmp_path / "a")]) == 1
    assert "no figure could be drawn" in capsys.readouterr().err


def test_cli_reports_missing_or_damaged_inputs_in_one_line(tmp_path, capsys):
    assert main(["figures", "--run-dir", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tbotan figures: error: run folder not found") and "\n" not in err
    run_dir = make_synthetic_run(tmp_path, n_test=2, models=MODELS[:1])
    (run_dir / "predictions" / "is+ts_lg0.01_s0" / "T0.50_test.h5").write_bytes(b"garbage")
    assert main(["figures", "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot read predictions file" in err and "T0.50_test.h5" in err and "\n" not in err


def test_partial_predictions_use_the_seeds_that_exist(tmp_path):
    run_dir = make_synthetic_run(tmp_path, n_test=2, models=MODELS[:2])
    (run_dir / "predictions" / "is+ts_lg0.01_s0" / "T0.50_test.h5").unlink()
    run = runs.analyse_run(run_dir, runs.load_run_config(run_dir / "config.yaml"))
    assert any("is+ts_lg0.01_s0: no predictions at T = 0.50" in n for n in run.notes)
    assert run.pearson(run.main_group, "0.50", "node").seeds == [1]
    assert run.embedding_distances(run.main_group)["labels"] == ["0.44", "0.64"]
    fig = figures.fig02_cb_maps(run)  # seed 1 is the one with every temperature
    assert "seed 1" in fig.get_suptitle()


def _legend_texts(fig: Figure) -> list[str]:
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
    return [t.get_text() for legend in legends for t in legend.get_texts()]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("fig11_sb_lambda", ["MD", r"$\lambda_g = 10^{-2}$ (2 seeds)", r"$\lambda_g = 10^{-1}$"]),
        ("fig12_t_pred_lambda", [r"$\lambda_g = 10^{-2}$ (2 seeds)", r"$\lambda_g = 10^{-1}$"]),
        ("fig14_sb_ablation", ["MD", "IS+TS (2 seeds)", "IS"]),
        ("fig15_t_pred_ablation", ["IS+TS (2 seeds)", "IS"]),
    ],
)
def test_series_figures_name_each_lambda_or_input_variant_with_its_seeds(run, name, expected):
    texts = _legend_texts(figures.FIGURES[name](run))
    assert texts[: len(expected)] == expected
