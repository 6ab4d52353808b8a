"""Every script in examples/ runs, so the README's quick start never rots."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _worlds import REPO, geographiclib_m

import o2o_geo as og

EXAMPLES = sorted((REPO / "examples").glob("*.py"))


def run_example(name, tmp_path):
    """An example's printed output (it must exit 0)."""
    script = REPO / "examples" / name
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_every_example_script_has_a_test_of_what_it_prints():
    tested = set(re.findall(r'run_example\("(\w+\.py)"', Path(__file__).read_text(encoding="utf-8")))
    tested |= {"quickstart.py", "geofence_campaign.py", "winback_campaign.py"}  # run by their own tests below
    assert {p.name for p in EXAMPLES} <= tested


def test_store_locator_prints_the_brute_force_answer(tmp_path):
    out = run_example("store_locator.py", tmp_path)
    # the oracle: the example's stores and hours, every distance by GeographicLib, sorted
    stores = og.sample_stores(seed=7)
    rng = np.random.default_rng(1)
    opens = rng.choice([7, 8, 10], len(stores)).astype(float)
    closes = rng.choice([20, 22, 24], len(stores)).astype(float)
    is_open = (opens <= 21.5) & (21.5 < closes)
    dist = np.array([geographiclib_m(31.2304, 121.4737, a, b) for a, b in zip(stores.lat, stores.lon, strict=True)])
    ids = np.asarray(stores.store_id)
    order = [i for i in np.argsort(dist, kind="stable") if is_open[i]][:3]
    got = re.findall(r"open, to walk to: (\S+) .*? ([\d,]+) m  \(open (\d+)-(\d+)\)", out)
    assert [g[0] for g in got] == [ids[i] for i in order], out
    for (_, d, o, c), i in zip(got, order, strict=True):
        assert abs(int(d.replace(",", "")) - dist[i]) <= 0.5 + 1e-6
        assert (int(o), int(c)) == (opens[i], closes[i])
    delivers, open_delivers = map(int, re.search(r"(\d+) stores deliver here, (\d+) of them open now", out).groups())
    assert 0 < open_delivers <= delivers <= len(stores)
    found = int(re.search(r"1,000 users: (\d+) have an open store within 3 km", out).group(1))
    assert 0 < found <= 1000


def test_fit_scorer_beats_the_default_and_stays_below_the_truth(tmp_path):
    out = run_example("fit_scorer.py", tmp_path)
    weights = re.findall(r"^  (\w+) +([+-][\d.]+) -> +([+-][\d.]+)$", out, re.M)
    assert len(weights) >= 10 and {w[0] for w in weights} >= {"intercept", "distance", "discount"}, out
    n_fit = int(re.search(r"fitted on ([\d,]+) pushes", out).group(1).replace(",", ""))
    default, fitted, truth = map(
        float,
        re.search(r"AUC on the next week .*: default ([\d.]+), fitted ([\d.]+), ground truth ([\d.]+)", out).groups(),
    )
    assert n_fit > 1000
    assert 0.5 < default < fitted <= truth < 1.0  # fitting helps; nothing beats the simulation's own truth
    predicted, observed = map(
        float, re.search(r"predicts ([\d.]+)% redemptions per push, ([\d.]+)% observed", out).groups()
    )
    assert abs(predicted - observed) < 0.35 * observed  # calibrated to within a third


def test_quickstart_output_is_right():
    res = subprocess.run(
        [sys.executable, str(EXAMPLES[0].parent / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    lines = res.stdout.splitlines()
    assert lines[0].startswith("['tea-7' 'plaza-2']")
    assert lines[-1] == "reloaded: ['new-1' 'tea-7']"


def test_geofence_campaign_shows_the_uplift_its_world_holds(tmp_path):
    """The simulated push raises redemptions (held-out users cannot redeem): the example's interval must say so."""
    script = EXAMPLES[0].parent / "geofence_campaign.py"
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    pattern = r"conversion = (\w+): .*?uplift ([+-][\d.]+) \[([+-][\d.]+), ([+-][\d.]+)\]"
    lines = {m: [float(v) for v in vals] for m, *vals in re.findall(pattern, res.stdout)}
    assert set(lines) == {"redeem", "redeem_or_visit"}, res.stdout
    up, lo, hi = lines["redeem"]
    assert 0.0 < lo < up < hi
    lo_either, hi_either = lines["redeem_or_visit"][1:]
    assert hi_either - lo_either > hi - lo  # walk-ins in both groups: the wider, noisier comparison
    assert re.search(r"budget of 50 pushes: 50 used", res.stdout)


def test_readme_python_blocks_run(tmp_path):
    """Every ```python block of the README is a complete program (fragments are tagged ```py)."""
    import re

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert len(blocks) >= 2
    for i, code in enumerate(blocks):
        script = tmp_path / f"block{i}.py"
        script.write_text(code, encoding="utf-8")
        res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert res.returncode == 0, f"README block {i} failed:\n{res.stderr}"


def test_readme_quick_start_runs_on_the_base_install(tmp_path):
    """The quick start's blocks run with pandas and geopandas absent, and run again the same."""
    import re

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("## Quick start")
    blocks = re.findall(r"```python\n(.*?)```", readme[start : readme.index("\n## ", start + 5)], re.S)
    assert len(blocks) >= 2
    hide = "import sys\nsys.modules['pandas'] = None\nsys.modules['geopandas'] = None\n"
    for i, code in enumerate(blocks):
        script = tmp_path / f"base{i}.py"
        script.write_text(hide + code, encoding="utf-8")
        outputs = []
        for _ in range(2):  # and a second run in the same folder prints the same (no state left behind)
            res = subprocess.run(
                [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
            )
            assert res.returncode == 0, f"quick-start block {i} needs more than the base install:\n{res.stderr}"
            outputs.append(res.stdout)
        assert outputs[0] == outputs[1], f"quick-start block {i} prints something else when run again"


def test_tour_notebook_runs(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(EXAMPLES[0].parent / "tour.ipynb", as_version=4)
    nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "milk-tea-30" in text and "uplift" in text
    if importlib.util.find_spec("folium") and importlib.util.find_spec("matplotlib"):  # the viz extra: section 4
        kinds = {k for o in outputs for k in o.get("data", {})}
        assert {"image/png", "text/html"} <= kinds  # the funnel chart and the folium map drew


def test_winback_campaign_recovers_its_retention_truth_and_never_pushes_the_opted_out(tmp_path):
    script = EXAMPLES[0].parent / "winback_campaign.py"
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    triggers = dict(re.findall(r"'(\w+/[\w-]+)': (\d+)", out))
    assert set(triggers) == {"enter/welcome", "exit/thanks", "lapsed/miss-you"}, out
    assert re.search(r"opted-out users: [1-9]\d*, decisions for them: 0 \(stats: [1-9]", out), out
    up, lo, hi = map(
        float, re.search(r"within 30 days: .*uplift ([+-][\d.]+) \[([+-][\d.]+), ([+-][\d.]+)\]", out).groups()
    )
    truth = float(re.search(r"true 30-day retention uplift .*: ([+-][\d.]+)", out).group(1))
    assert 0.0 < lo <= truth <= hi and lo < up < hi
    assert "all for users with no visit in 30 days: True" in out
