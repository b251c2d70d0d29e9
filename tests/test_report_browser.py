"""The HTML report (snakemake --report) in a real browser: Debian's chromium driven headless by playwright.

Chromium comes from apt, installed by this test when missing (as tests/slurm/cluster.sh installs
SLURM); that needs root. Outside CI the test skips when it cannot get a browser; in CI (CI=true) it
fails. Checks: the report opens with no console errors or uncaught exceptions, the sidebar lists
every category, a per-pair figure opens from its category and renders at a non-zero size, and a
table opens in the page (HTML, not a CSV download) with its rows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_snakemake

pytestmark = [pytest.mark.browser, pytest.mark.workflow]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CATEGORIES = ["Fragility", "Reliability", "Aggregation", "Calibration", "Uncertainty", "Operating points", "Claims"]
def unusable(reason: str):
    if IN_CI:
        pytest.fail(f"CI must run the browser test: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of the system chromium, installed from apt when missing (root only)."""
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        unusable("no chromium, and installing it (apt-get install chromium) needs root on Debian")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=600"]  # tests run in parallel: the SLURM harness may hold dpkg's lock
    install = [*apt, "install", "-y", "--no-install-recommends", "chromium"]
    result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:  # a fresh image has no package lists yet
        subprocess.run([*apt, "update"], env=env, capture_output=True, text=True, timeout=900)
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        unusable(f"apt-get install chromium failed:\n{result.stderr[-3000:]}")
    return shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def report_html(import_run, tmp_path_factory) -> Path:
    """The HTML report of the session's import-config run (2 models x 2 datasets, every analysis),
    written in a copy of it (the shared run stays read-only)."""
    workdir = tmp_path_factory.mktemp("browser") / "run"
    shutil.copytree(import_run, workdir, symlinks=True, ignore=shutil.ignore_patterns("locks", "incomplete"))
    run_snakemake(workdir, "--configfile", str(workdir / "config.yaml"), "--report", "results/report.html")
    assert (workdir / "results/REPORT.md").is_file()
    return workdir / "results/report.html"


def test_report_in_a_real_browser(chromium, report_html):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unusable("playwright is not installed (pip install -r requirements.txt)")
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
            page.goto(report_html.as_uri())
            page.wait_for_load_state("load")
            sidebar = page.inner_text("body")
            missing = [c for c in CATEGORIES if c not in sidebar.splitlines()]
            assert not missing, f"categories missing from the report's sidebar: {missing}\n{sidebar[:2000]}"

            # a per-pair figure: category -> model subcategory -> its row's eye button
            page.get_by_text("Reliability", exact=True).click()
            page.get_by_text("m1", exact=True).first.click()
            page.locator("table td", has_text="test").first.wait_for(timeout=15000)
            # labelled by model / dataset / split: the report offers the datasets as a choice above a
            # table of the model and split labels
            labels, table = page.inner_text("body"), page.inner_text("table")
            assert "ds_a" in labels and "ds_b" in labels and "m1" in table and "test" in table, (labels[:2000], table)
            page.locator("a[iconname=eye]").first.click()
            page.wait_for_function(
                "() => Array.from(document.querySelectorAll('img')).some("
                "i => i.src.startsWith('data:image/png') && i.naturalWidth > 0 && i.clientWidth > 0)",
                timeout=15000)
            size = page.evaluate(
                "() => Array.from(document.querySelectorAll('img')).filter(i => i.src.startsWith('data:image/png'))"
                ".map(i => [i.naturalWidth, i.naturalHeight, i.clientWidth, i.clientHeight])[0]")
            assert min(size) > 0, size
        finally:
            browser.close()
    assert not errors, "the report logged errors:\n" + "\n".join(errors)


def test_a_table_shows_its_rows_in_the_page_after_a_click(chromium, report_html):
    """Tables are HTML in the report (a CSV would only download): its rows appear in the page."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unusable("playwright is not installed (pip install -r requirements.txt)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(report_html.as_uri())
            page.wait_for_load_state("load")
            page.get_by_text("Reliability", exact=True).click()
            page.get_by_text("Tables", exact=True).first.click()
            row = page.locator("tr", has=page.get_by_text("reliability", exact=True))
            row.locator("a[iconname=eye]").first.click()
            page.locator("iframe").first.wait_for(timeout=15000)
            frame = next(f for f in page.frames if "filename=reliability.html" in f.url)
            frame.locator("td").first.wait_for(timeout=15000)
            header = frame.locator("th").all_inner_texts()
            cells = frame.locator("td").all_inner_texts()
            assert header[:4] == ["model", "dataset", "split", "method"], header
            assert {"m1", "m2"} <= set(cells) and {"selected", "random", "mean"} <= set(cells), cells[:40]
        finally:
            browser.close()
