"""--reference: published numbers beside ours, marked where our 95% interval does not hold them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from runfolders import write_cell

import lrbench.cli.report_cmd  # noqa: F401  (registers the command)
from lrbench.cli import main
from lrbench.report import analyse, build_report
from lrbench.report.reference import compare, load_reference

HEADER = "dataset,model,optimizer,budget,schedule"


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    # test error over 3 seeds: rex 9.00 [6.52, 11.48], step 15.00 [12.52, 17.48] (t-intervals:
    # mean ± 4.303 · 1 / √3); 5% of 60 epochs
    write_cell(tmp_path, {"rex": [0.90, 0.91, 0.92], "step": [0.85, 0.86, 0.84]})
    return tmp_path / "sweep"


def test_reference_numbers_sit_beside_ours_and_misses_are_marked(
    sweep: Path, tmp_path: Path
) -> None:
    paper = tmp_path / "paper.csv"
    paper.write_text(
        f"{HEADER},epochs,test_error_pct,std\n"
        "cifar10,resnet20,sgd,0.05,rex,3,9.5,0.2\n"  # inside our interval
        "cifar10,resnet20,sgd,0.05,step,3,12.0,\n"  # outside it
        "cifar10,resnet20,sgd,0.5,rex,30,7.0,\n"  # a cell we did not run: ignored
    )
    report = build_report([sweep], tmp_path / "out", reference=str(paper))
    rows = pd.read_csv(tmp_path / "out" / "reference.csv").set_index("schedule")
    assert list(rows.columns) == [
        "dataset",
        "model",
        "optimizer",
        "budget",
        "n",
        "mean",
        "ci_low",
        "ci_high",
        "reference",
        "reference_std",
        "held",
    ]
    assert rows.loc["rex", ["reference", "reference_std", "held"]].tolist() == [9.5, 0.2, True]
    assert rows.loc["step", ["ci_low", "ci_high", "reference", "held"]].tolist() == [
        pytest.approx(12.515862),
        pytest.approx(17.484138),
        12.0,
        False,
    ]
    assert "## Against paper" in report.markdown
    assert "| rex | 9.00 [6.52, 11.48]ᵗ · 9.50 ± 0.20 |" in report.markdown
    assert "| step | 15.00 [12.52, 17.48]ᵗ · 12.00 † |" in report.markdown
    assert "$^\\dagger$" in report.latex


def test_a_test_acc_reference_compares_in_the_reports_metric(sweep: Path, tmp_path: Path) -> None:
    paper = tmp_path / "acc.csv"
    paper.write_text(f"{HEADER},test_acc\ncifar10,resnet20,sgd,0.05,rex,0.905\n")
    found = analyse([sweep])
    compared = compare(found.summary, load_reference(paper))
    assert compared["schedule"].tolist() == ["rex"]
    assert compared["ref_acc"].tolist() == [0.905] and compared["held"].tolist() == [True]


def test_the_rex_paper_ships_with_lrbench(tmp_path: Path) -> None:
    reference = load_reference("rex-paper")
    assert len(reference.table) == 90  # 7 schedules x 6 budgets for sgd, 8 x 6 for adam
    scores = {"rex": [0.90, 0.91], "step": [0.85, 0.86], "constant": [0.8, 0.8]}
    write_cell(tmp_path, scores, full_epochs=300, optimizer="adam", lr=1e-3)
    compared = compare(analyse([tmp_path]).summary, reference).set_index("schedule")
    error = (100 * (1 - compared["ref_acc"])).to_dict()
    # the paper's 'none' is lrbench's constant rate
    assert error == pytest.approx({"rex": 13.96, "step": 15.41, "constant": 23.01})


def test_a_reference_for_another_full_length_marks_nothing_and_says_why(
    sweep: Path, tmp_path: Path
) -> None:
    report = build_report([sweep], tmp_path / "out", reference="rex-paper")
    assert report.compared is not None and report.compared.empty
    (line,) = [p.reason for p in report.problems if p.reason.startswith("reference rex-paper")]
    assert "cifar10/resnet20/sgd are for 300-epoch full runs" in line
    assert "2 of our row(s) are of 60-epoch full runs: not compared" in line
    assert "†" not in report.markdown


def test_a_reference_for_more_data_marks_nothing_and_says_why(tmp_path: Path) -> None:
    write_cell(
        tmp_path, {"rex": [0.9, 0.91]}, full_epochs=300, spec={"dataset": {"limit_train": 1000}}
    )
    report = build_report([tmp_path / "sweep"], tmp_path / "out", reference="rex-paper")
    assert report.compared is not None and report.compared.empty
    (line,) = [p.reason for p in report.problems if p.reason.startswith("reference rex-paper")]
    assert "50,000 training examples" in line and "1,000 training examples" in line


def test_a_reference_without_a_match_is_noted(sweep: Path, tmp_path: Path) -> None:
    paper = tmp_path / "other.csv"
    paper.write_text(f"{HEADER},test_error_pct\nimagenet,resnet50,sgd,1.0,step,23.9\n")
    report = build_report([sweep], tmp_path / "out", reference=str(paper))
    assert any("reference other: none of its rows matches" in p.reason for p in report.problems)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file, and no reference shipped by that name (shipped: rex-paper)"),
        ("", "empty; a reference starts with a header"),
        ("dataset,model,optimizer,schedule,test_error_pct\n", "no column 'budget'"),
        (f"{HEADER}\n", "neither of columns 'test_error_pct' and 'test_acc'; give one"),
        (f"{HEADER},test_acc,test_error_pct\n", "both columns 'test_error_pct' and 'test_acc'"),
        (f"{HEADER},test_error_pct\nc,m,sgd,0.05,rex,n/a\n", "line 2: column 'test_error_pct'"),
        (f"{HEADER},test_acc\nc,m,sgd,0.05,rex,91.2\n", "column 'test_acc' is 91.2, outside"),
        (f"{HEADER},test_error_pct\nc,m,sgd,half,rex,9\n", "line 2: column 'budget' is 'half'"),
        (f"{HEADER},test_error_pct\nc,m,sgd,0.05,,9\n", "line 2: column 'schedule' is empty"),
        (
            f"{HEADER},test_error_pct\nc,m,sgd,0.05,rex,9\nc,m,sgd,0.05,rex,8\n",
            "line 3: a second row for c/m/sgd budget 0.05 schedule rex (the first is on line 2)",
        ),
    ],
)
def test_a_bad_reference_file_is_one_line_naming_file_and_column_and_exit_2(
    sweep: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    message: str,
) -> None:
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(sweep), "--reference", str(path)])
    assert exit_info.value.code == 2
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(path) in err and message in err
    assert not (sweep / "report").exists()  # checked before any work


def test_a_misspelt_shipped_name_gets_a_suggestion(
    sweep: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["report", str(sweep), "--reference", "rex-papr"])
    assert "(did you mean 'rex-paper'?)" in capsys.readouterr().err
