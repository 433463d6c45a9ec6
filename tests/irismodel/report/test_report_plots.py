"""The report's plots: valid small PNGs, titles inside the figure, bars the table's intervals."""

import os
from pathlib import Path

import numpy as np
import pytest
from report_runs import MAIN, NOT_HELD_OUT, png_size, rows_of

from irismodel.report import plots
from irismodel.report.answers import answer_numbers
from irismodel.report.scan import scan
from irismodel.report.summary import summarize_models


def test_plots_are_valid_small_pngs(frame, main_report):
    """The plots are PNGs, wider with more panels, and small."""
    loss = Path(main_report.paths["loss_curves"])
    width, height = png_size(loss.read_bytes())
    assert width == 2 * 460 and height > 360  # two panels: sgd = manual, manual-no-zero-grad
    models = scan(frame, 100).models
    accuracy = plots.plot_accuracy(models, summarize_models(models))
    assert png_size(accuracy)[0] > width  # a panel per setting, three a line
    assert os.path.getsize(loss) < 200_000 and len(accuracy) < 200_000


@pytest.fixture
def drawn(monkeypatch):
    """Every figure the plots finish: its titles' extents and its axes, before it is written."""
    figures = []
    save = plots.png

    def keep(plt, figure):
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        extents = []
        for text in [figure._suptitle, *(axis.title for axis in figure.axes)]:
            if text is not None and text.get_text():
                box = text.get_window_extent(renderer)
                extents.append((box.x0, box.x1, figure.bbox.x1, text.get_text()))
        figures.append((extents, figure.axes))
        return save(plt, figure)

    monkeypatch.setattr(plots, "png", keep)
    return figures


def test_plot_titles_fit_their_figure(frame, drawn):
    """No title of any plot runs past the figure's edges, with one panel or several."""
    for run_id in (NOT_HELD_OUT, MAIN):
        found = scan(rows_of(frame, run_id), 100)
        plots.plot_loss(found)
        plots.plot_accuracy(found.models, summarize_models(found.models))
        plots.plot_slope_by_epoch(answer_numbers(found), found.models)
    extents = [extent for figure, _ in drawn for extent in figure]
    assert len(drawn) == 6 and len(extents) > 6
    for x0, x1, width, text in extents:
        assert x0 >= 0 and x1 <= width, text


def test_the_accuracy_bars_are_the_summarys_intervals(frame, drawn):
    """Each bar of the accuracy plot is its configuration's mean and 95% interval over seeds
    and splits, as the summary table gives them."""
    models = scan(rows_of(frame, MAIN), 100).models
    summary = summarize_models(models)
    plots.plot_accuracy(models, summary)
    bars = set()
    for container in drawn[0][1][0].containers:
        (mean,) = container.lines[0].get_ydata()
        ((_, low), (_, high)) = container.lines[2][0].get_segments()[0]
        bars.add(tuple(np.round([mean, low, high], 9)))
    table = summary[["test_accuracy_mean", "test_accuracy_low", "test_accuracy_high"]]
    assert bars == {tuple(np.round(row, 9)) for row in table.to_numpy()}
    assert len(bars) == 6  # 3 hidden_dims x (sgd = manual, manual-no-zero-grad)
