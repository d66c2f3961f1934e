"""report.html: one self-contained page holding the whole report, read in a real browser.

The browser tests drive Debian's `chromium` headless (.ci/run installs it); without it they
skip. The page is copied alone into an empty folder first: whatever it shows then, it holds.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from matplotlib.image import imread
from runfolders import write_cell, write_run

from lrbench.report import Report, build_report

LABEL = 'step<img src=x onerror="alert(1)">'  # labels are data from results folders
SCHEDULES = {"rex", "linear", "cosine", LABEL}
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(
    BROWSER is None,
    reason="no chromium here (.ci/run installs Debian's: apt-get install chromium)",
)
LAPTOP = "1366,900"
# Put into the copy under test: record every fetch the page's policy refused and every
# resource it loaded, then sort two tables by clicking their headers as a reader would.
LISTEN = """<script>window.refused = [];
document.addEventListener("securitypolicyviolation", function (e) { refused.push(e.blockedURI); });
</script>"""
PROBE = """<script>window.addEventListener("load", function () {
  function names(table) {
    return Array.prototype.map.call(table.tBodies[0].rows, function (r) {
      return r.cells[0].textContent.trim(); });
  }
  function click(table, column) { table.tHead.rows[0].cells[column].querySelector("button").click(); }
  var finish = document.getElementById("finish-table");
  var setting = document.querySelector("table.setting");
  var out = {finish: names(finish)};
  click(finish, 0); out.finishByName = names(finish);
  click(finish, 0); out.finishByNameReversed = names(finish);
  click(setting, 1); out.settingByBudget = names(setting);
  click(setting, 1); out.settingByBudgetReversed = names(setting);
  out.refused = window.refused;
  out.resources = performance.getEntriesByType("resource").map(function (e) { return e.name; });
  out.pageWidth = document.documentElement.scrollWidth;
  out.windowWidth = window.innerWidth;
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});</script>"""


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    root = tmp_path_factory.mktemp("results")
    val = {"val_acc": 0.5}
    for optimizer, lr in (("sgd", 0.1), ("adam", 1e-3)):
        for budget in (0.05, 0.5):
            write_cell(root, {"rex": [0.92, 0.90], "linear": [0.91, 0.905]},
                       budget=budget, optimizer=optimizer, lr=lr, **val)  # fmt: skip
            for seed, acc in enumerate([0.88, 0.87], start=1):
                write_run(root, schedule="step", label=LABEL, seed=seed, test_acc=acc,
                          budget=budget, optimizer=optimizer, lr=lr, **val)  # fmt: skip
        write_cell(root, {"cosine": [0.93, 0.925]}, budget=0.5, optimizer=optimizer, lr=lr, **val)
    # an lr grid: 0.4 tests better but validates worse, so 0.1 is chosen
    write_cell(root, {"rex": [0.95, 0.95]}, budget=0.5, lr=0.4, val_acc=0.4)
    write_run(root, schedule="rex", seed=3, status="failed", **val)
    write_run(root, schedule="linear", seed=3, status=None, **val)
    reference = root / "paper.csv"
    reference.write_text(
        "dataset,model,optimizer,budget,schedule,test_error_pct\n"
        "cifar10,resnet20,sgd,0.05,rex,9.5\n"
        "cifar10,resnet20,sgd,0.05,linear,4.0\n"
    )
    return build_report([root / "sweep"], root / "sweep" / "report", reference=reference)


@pytest.fixture(scope="module")
def page(report: Report) -> str:
    return (report.out_dir / "report.html").read_text(encoding="utf-8")


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text of <style> elements."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.styles: list[str] = []
        self._in_style = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


def test_report_writes_report_html_beside_the_other_files(report: Report) -> None:
    assert report.out_dir / "report.html" in report.files
    assert (report.out_dir / "tables.md").exists() and (report.out_dir / "lr_curves.png").exists()


def test_the_page_holds_tables_figures_anytime_reference_runs_and_problems(
    report: Report, page: str
) -> None:
    tags = Elements(page).tags
    ids = [a["id"] for _, a in tags if "id" in a]
    sections = [a["id"] for t, a in tags if t == "section"]
    assert sections == [
        "verdict",
        "finishes",
        "settings",
        "reference",
        "figures",
        "anytime",
        "runs",
    ]
    pngs = sorted(p.stem for p in report.files if p.suffix == ".png")
    assert sorted(i.removeprefix("figure-") for i in ids if i.startswith("figure-")) == pngs
    assert sum(t == "svg" for t, _ in tags) == len(pngs)  # each figure inline, once
    assert len(ids) == len(set(ids))  # matplotlib's ids, prefixed per figure, never clash
    for schedule in SCHEDULES:
        assert html.escape(schedule, quote=False) in page
    assert "rex-b0.05-s3-" in page and "RuntimeError: CUDA out of memory" in page  # failed
    assert "unfinished: no summary.json" in page
    assert "P(top-1) " in page and "expected top-1 %" in page
    assert "paper: 4.00" in page and "@media print" in page


def test_the_page_refers_to_nothing_outside_itself(page: str) -> None:
    parsed = Elements(page)
    for tag, attrs in parsed.tags:
        assert tag not in {"link", "iframe", "object", "embed", "base", "img", "image"}, tag
        for name in ("src", "href", "xlink:href", "srcset", "action", "poster", "data"):
            value = attrs.get(name)
            assert value is None or value.startswith(("#", "data:")), (tag, name, value)
        for value in [attrs.get("style", "")]:
            assert "url(" not in value.replace("url(#", "")
    for css in parsed.styles:
        assert "@import" not in css and "url(" not in css.replace("url(#", "")
    policy = next(a["content"] for t, a in parsed.tags if a.get("http-equiv"))
    assert "default-src 'none'" in policy


def test_labels_from_results_folders_are_text_not_markup(page: str) -> None:
    assert '<img src=x onerror="alert(1)">' not in page
    assert "step&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page  # tables
    assert 'step&lt;img src=x onerror="alert(1)"&gt;</text>' in page  # figure legends


def _chromium(*args: str) -> str:
    assert BROWSER is not None
    done = subprocess.run(
        [
            BROWSER,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--hide-scrollbars",
            f"--window-size={LAPTOP}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


@pytest.fixture(scope="module")
def alone(page: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The page with the probe, alone in an empty folder."""
    folder = tmp_path_factory.mktemp("alone")
    probed = page.replace("<head>", "<head>" + LISTEN, 1).replace("</body>", PROBE + "</body>", 1)
    (folder / "report.html").write_text(probed, encoding="utf-8")
    return folder / "report.html"


@pytest.fixture(scope="module")
def browsed(alone: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    """Chromium's DOM after the page loaded (alone), and what the probe saw."""
    profile = tmp_path_factory.mktemp("profile")
    dom = _chromium(f"--user-data-dir={profile}", "--dump-dom", alone.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    return dom, json.loads(html.unescape(found.group(1)))


@needs_browser
def test_in_a_browser_the_lone_page_shows_everything_and_fetches_nothing(
    report: Report, browsed: tuple[str, dict]
) -> None:
    dom, probe = browsed
    assert probe["refused"] == [] and probe["resources"] == []
    assert set(probe["finish"]) == SCHEDULES
    tags = Elements(dom).tags
    pngs = [p for p in report.files if p.suffix == ".png"]
    figures = re.findall(r"<svg.*?</svg>", dom, re.S)
    assert len(figures) == len(pngs)
    for svg in figures:  # drawn: lines and words, not empty boxes
        assert svg.count("<path") >= 10 and svg.count("<text") >= 5
    assert not any(t == "img" for t, _ in tags)  # the label stayed text
    # finishes, 2 settings, every row, the reference (sgd only), 2 anytime, the runs
    assert sum(t == "table" for t, _ in tags) == 1 + 2 + 1 + 1 + 2 + 1


@needs_browser
def test_in_a_browser_clicking_a_header_sorts_its_table(browsed: tuple[str, dict]) -> None:
    _, probe = browsed
    assert probe["finishByName"] == ["cosine", "linear", "rex", LABEL]
    assert probe["finishByNameReversed"] == [LABEL, "rex", "linear", "cosine"]
    # budget 5%: test error 9.00 (rex), 9.25 (linear), 12.50 (the label); cosine did not run
    # there: "–" stays at the bottom either way
    assert probe["settingByBudget"] == ["rex", "linear", LABEL, "cosine"]
    assert probe["settingByBudgetReversed"] == [LABEL, "linear", "rex", "cosine"]


@needs_browser
def test_in_a_browser_the_page_fits_a_laptop_screen(
    browsed: tuple[str, dict], alone: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _, probe = browsed
    assert probe["windowWidth"] == int(LAPTOP.split(",")[0])
    assert probe["pageWidth"] <= probe["windowWidth"]  # wide tables scroll in their own box
    shot = tmp_path_factory.mktemp("shot") / "report.png"
    profile = tmp_path_factory.mktemp("profile")
    _chromium(f"--user-data-dir={profile}", f"--screenshot={shot}", alone.as_uri())
    pixels = imread(shot)
    assert pixels.shape[:2] == (900, 1366)
    inked = (pixels[..., :3] < 0.9).any(axis=-1).mean()
    assert 0.02 < inked < 0.5  # text and tables on a white page, not blank


def test_the_run_list_says_why_a_run_is_not_in_the_tables(page: str) -> None:
    runs = page[page.index('<table class="sortable runs">') :]
    rows = re.findall(r'<tr class="state-(\w+)".*?<td>(\w+)</td><td class="wrap">(.*?)</td>', runs)
    assert len(rows) == 2 * (3 * 2 * 2 + 2) + 2 + 2
    assert [used for _, used, _ in rows[:4]] == ["no"] * 4  # the runs left out come first
    assert {used for _, used, _ in rows[4:]} == {"yes"}
    assert {(state, why.split(" (")[0]) for state, _, why in rows[:4]} == {
        ("done", "another lr of its grid was chosen on validation"),
        ("failed", "failed: RuntimeError: CUDA out of memory"),
        ("unfinished", "unfinished: no summary.json"),
    }
