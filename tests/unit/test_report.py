"""`lang-neurons run` end to end on the tiny Llama, the report files, and the page rendered in a
real headless Chromium (skipped only where no Chromium is installed: `apt-get install -y chromium`).

The browser is driven over the DevTools protocol with the standard library only: Chromium's
``--remote-debugging-pipe`` reads NUL-terminated JSON commands on fd 3 and writes replies and
events on fd 4; ``os.posix_spawn`` puts two pipes there. The test opens ``index.html`` from
disk, waits until Plotly has drawn every figure (its ``.main-svg`` nodes and one trace group per
trace), and checks the ``Network.requestWillBeSent`` events: only the page's own file. A control
page with an ``http://`` image first proves that a request would be seen (the host resolver maps
every host to nothing, so nothing can leave the machine either way).
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import select
import shutil
import sys
import time
import types
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.offline
import pytest
from plot_inputs import ROWS, _neurons, _results, _stats
from tiny_models import SENTENCES

import lang_neurons as ln
from lang_neurons import cli, pipeline, report

RUN_ARGS = [
    "--langs",
    "en,de,ja",
    "--samples",
    "10",
    "--max-new-tokens",
    "4",
    "--top-rate",
    "0.1",
    "--top-k",
    "5",
    "--bottom-k",
    "5",
    "--methods",
    "add",
    "--translation-items",
    "0",
    "--loss-texts",
    "3",
    "--sweep-alphas",
    "0.5,1",
    "--no-progress",
    "--no-images",
]
FIGURES = {
    "headline",
    "layers_lape",
    "overlap_lape",
    "jaccard_lape",
    "layers_ap",
    "overlap_ap",
    "jaccard_ap",
    "lape_vs_ap",
    "entropy_lape",
    "entropy_ap",
    "profile_probability",
    "profile_pooled",
    "steering_rates",
    "steering_sweep",
    "loss_matrix",
}
PLOTLY_JS = plotly.offline.get_plotlyjs()


def _run(model_dir: Path, texts: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        code = cli.main(
            ["run", "--model", str(model_dir), "--corpus", str(texts), "--out", str(out), *RUN_ARGS, *extra]
        )
    return code, stdout.getvalue(), stderr.getvalue()


@pytest.fixture(scope="module")
def study(llama_dir, tmp_path_factory) -> types.SimpleNamespace:
    """One `lang-neurons run` on the tiny Llama with en/de/ja texts, shared by the tests below."""
    texts = tmp_path_factory.mktemp("texts")
    for lang in ("en", "de", "ja"):
        (texts / f"{lang}.txt").write_text("\n".join(SENTENCES[lang][:12]) + "\n", encoding="utf-8")
    out = tmp_path_factory.mktemp("study") / "run"
    start = time.perf_counter()
    code, stdout, stderr = _run(llama_dir, texts, out)
    assert code == 0, stderr
    return types.SimpleNamespace(
        out=out, texts=texts, model=llama_dir, stdout=stdout, stderr=stderr, seconds=time.perf_counter() - start
    )


# -- the run and its files ---------------------------------------------------------------------
def test_run_writes_the_study_and_one_self_contained_page(study):
    out = study.out
    for name in (
        "run.json",
        "stats.safetensors",
        "neurons_lape.safetensors",
        "neurons_ap.safetensors",
        "metrics.json",
        "metrics.txt",
    ):
        assert (out / name).is_file(), name
    page = (out / "index.html").read_text(encoding="utf-8")
    assert page.count(PLOTLY_JS) == 1  # plotly.js inlined exactly once...
    rest = page.replace(PLOTLY_JS, "")
    assert "<script src" not in rest and "cdn.plot.ly" not in rest  # ...and nothing loaded from elsewhere
    divs = re.findall(r'<div id="figure-([\w-]+)" class="plotly-graph-div"', page)
    assert sorted(divs) == sorted(FIGURES)  # one div per figure, each once
    assert page.count("Plotly.newPlot(") == len(FIGURES)
    assert {p.stem for p in (out / "figures").glob("*.html")} == FIGURES
    # Separate figure pages share one offline copy of plotly.js beside them.
    assert (out / "figures" / "plotly.min.js").read_text(encoding="utf-8") == PLOTLY_JS
    for name in FIGURES:
        single = (out / "figures" / f"{name}.html").read_text(encoding="utf-8")
        assert 'src="plotly.min.js"' in single and PLOTLY_JS not in single and "plotly-graph-div" in single
    for text in (
        "Settings",
        "Statistics",
        "LAPE neurons",
        "AP neurons",
        "Steering (LAPE neurons)",
        "mean rate",
        "Loss matrix",
    ):
        assert text in page
    assert re.findall(r'<div id="figure-([\w-]+)"', page)[0] == "headline"  # the headline figure comes first
    headline = page[page.index("<h2>Headline</h2>") : page.index("<h2>Statistics</h2>")]  # and its table leads the page
    assert page.index("<h2>Headline</h2>") < page.index("<h2>Settings</h2>")
    assert '<th scope="col">rate [95 % interval] n</th>' in headline and '<th scope="row">add:random</th>' in headline
    assert "chosen on dev</td>" in headline and '<th scope="row">baseline</th>' in headline
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["targets"]) == {"de", "ja"} and metrics["settings"]["method"] == "lape"
    assert sorted({p["alpha"] for p in metrics["sweep"]}) == [0.5, 1.0]
    assert {p["target"] for p in metrics["sweep"]} == {"de", "ja"}
    assert {p["method"] for p in metrics["sweep"]} == {
        "add",
        "residual_diffmean",
    }  # a DiffMean curve beside the method's
    assert {p["alpha"] for p in metrics["sweep"] if p["method"] == "residual_diffmean"} == {0.5, 1.0}
    assert metrics["loss_matrix"]["langs"] == ["en", "de", "ja"]
    assert "mean rate" in (out / "metrics.txt").read_text()
    # the steering and loss tables are HTML tables with intervals; the settings are a table, not JSON
    assert page.count('<table class="data">') == 3 and "<pre>" in page  # statistics and neuron summaries stay text
    steering = page[page.index("<h2>Steering (LAPE neurons)</h2>") : page.index("<h2>Loss matrix (LAPE neurons)</h2>")]
    assert '<th scope="col">rate</th>' in steering and "n=10</td>" in steering and "Wilson" in steering
    assert "<pre>" not in steering
    loss = page[page.index("<h2>Loss matrix (LAPE neurons)</h2>") :]
    assert '<th scope="row">de ablated</th>' in loss and "bootstrap over texts" in loss
    assert '<td>intervals</td><td><table class="settings">' in page and "<td>resamples</td><td>1000</td>" in page
    assert all("rate_low" in p and "rate_high" in p for p in metrics["sweep"])
    assert f"report: {(out / 'index.html').resolve()}" in study.stdout
    assert [f"[{i}/5]" in study.stderr for i in range(1, 6)] == [True] * 5
    ap = ln.NeuronSet.load(out / "neurons_ap")
    assert ap.counts().tolist() == [10, 10, 10]


def test_rerun_reuses_statistics_neurons_and_metrics(study, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(study.out, out, ignore=shutil.ignore_patterns("figures", "index.html"))
    files = ["stats.safetensors", "neurons_lape.safetensors", "neurons_ap.safetensors", "metrics.json"]
    before = {f: (out / f).stat().st_mtime_ns for f in files}
    code, _, err = _run(study.model, study.texts, out)
    assert code == 0, err
    assert "reusing statistics" in err and "reusing LAPE neurons" in err and "reusing AP neurons" in err
    assert "reusing the steering evaluation" in err
    assert {f: (out / f).stat().st_mtime_ns for f in files} == before
    assert (out / "index.html").is_file() and len(list((out / "figures").glob("*.html"))) == len(FIGURES)

    # Another LAPE top rate: statistics and AP neurons stay, LAPE neurons and the evaluation are redone.
    code, _, err = _run(study.model, study.texts, out, "--top-rate", "0.2", "--sweep-alphas", "1")
    assert code == 0, err
    after = {f: (out / f).stat().st_mtime_ns for f in files}
    assert after["stats.safetensors"] == before["stats.safetensors"]
    assert after["neurons_ap.safetensors"] == before["neurons_ap.safetensors"]
    assert after["neurons_lape.safetensors"] != before["neurons_lape.safetensors"]
    assert ln.NeuronSet.load(out / "neurons_lape").params["top_rate"] == 0.2
    assert json.loads((out / "metrics.json").read_text())["evaluation"]["lape"]["top_rate"] == 0.2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--methods", "teleport"], "unknown method 'teleport'"),
        (["--sweep-alphas", "half,1"], "--sweep-alphas takes comma-separated numbers"),
        (["--top-k", "100000"], "--top-k 100000 but the model has 256 neurons"),
        (["--targets", "fr"], "--targets 'fr' is not one of --langs en,de,ja"),
    ],
)
def test_run_bad_input_gets_one_line_and_no_files(study, tmp_path, args, message):
    out = tmp_path / "out"
    code, _, err = _run(study.model, study.texts, out, *args)
    assert code == 2 and message in err and "Traceback" not in err
    assert not out.exists()


# -- report.py on its own -------------------------------------------------------------------------
def _figure(title: str) -> go.Figure:
    return go.Figure(go.Bar(x=["en", "de"], y=[1, 2]), layout={"title": {"text": title}})


def test_write_report_page_and_files(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "kaleido", None)  # as if not installed
    figures = {"first": _figure("First <figure>"), "second-2": _figure("Second")}
    path = report.write_report(
        tmp_path / "r", figures, {"model": "tiny", "langs": ["en", "de"]}, {"Counts & <things>": "a  b\n1  2"}
    )
    assert path == tmp_path / "r" / "index.html"
    page = path.read_text(encoding="utf-8")
    assert page.count(PLOTLY_JS) == 1
    assert re.findall(r'<div id="figure-([\w-]+)"', page) == ["first", "second-2"]  # in the given order
    assert "<h2>First &lt;figure&gt;</h2>" in page and "<h2>Counts &amp; &lt;things&gt;</h2>" in page
    assert "<pre>a  b\n1  2</pre>" in page
    assert "<td>langs</td><td>en, de</td>" in page
    assert "kaleido is not installed" in page
    table = report.Table(["target", "rate <x>"], [["de & fr", "0.71 [0.53, 0.85] n=30"]], note="Wilson <95%>")
    page = report.write_report(
        tmp_path / "t", {}, {"steering": {"alpha": 1.0, "methods": ["add"]}}, {"Steering": table}
    ).read_text()
    assert (
        '<table class="data"><thead><tr><th scope="col">target</th><th scope="col">rate &lt;x&gt;</th></tr></thead>'
        '<tbody><tr><th scope="row">de &amp; fr</th><td>0.71 [0.53, 0.85] n=30</td></tr></tbody></table>'
        '<p class="table-note">Wilson &lt;95%&gt;</p>'
    ) in page
    assert (
        '<td>steering</td><td><table class="settings"><tr><td>alpha</td><td>1.0</td></tr><tr><td>methods</td><td>add</td>'
        in page
    )
    assert sorted(p.name for p in (tmp_path / "r" / "figures").iterdir()) == [
        "first.html",
        "plotly.min.js",
        "second-2.html",
    ]
    assert not list((tmp_path / "r").rglob("*.tmp"))  # atomic writes leave no temporary files


def test_write_report_images_when_kaleido_works_or_fails(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "kaleido", types.ModuleType("kaleido"))
    monkeypatch.setattr(go.Figure, "to_image", lambda self, format: f"<{format}>".encode())
    page = report.write_report(tmp_path / "ok", {"f": _figure("F")}, {}, {}).read_text()
    assert (tmp_path / "ok" / "figures" / "f.png").read_bytes() == b"<png>"
    assert (tmp_path / "ok" / "figures" / "f.svg").read_bytes() == b"<svg>"
    assert "PNG/SVG" not in page

    def broken(self: go.Figure, format: str) -> bytes:
        raise RuntimeError("Chrome not found\nmore detail")

    monkeypatch.setattr(go.Figure, "to_image", broken)
    page = report.write_report(tmp_path / "bad", {"f": _figure("F")}, {}, {}).read_text()
    assert "kaleido failed (RuntimeError: Chrome not found)" in page
    assert not (tmp_path / "bad" / "figures" / "f.png").exists()
    report.write_report(tmp_path / "off", {"f": _figure("F")}, {}, {}, images=False)
    assert not (tmp_path / "off" / "figures" / "f.png").exists()


def test_write_report_bad_input(tmp_path):
    with pytest.raises(ln.LangNeuronsError, match="figure name '../x' cannot be a file name"):
        report.write_report(tmp_path, {"../x": _figure("x")}, {}, {})
    (tmp_path / "file").write_text("")
    with pytest.raises(ln.LangNeuronsError, match="is a file"):
        report.write_report(tmp_path / "file", {}, {}, {})


def test_build_figures_makes_what_the_data_allows():
    stats, lape = _stats(), _neurons("lape")
    ap = _neurons("ap", members={"en": [(0, 0), (1, 1)], "de": [(0, 1)], "fr": [(0, 3)]})
    assert set(report.build_figures({"lape": lape})) == {"layers_lape", "overlap_lape", "jaccard_lape"}
    with_stats = report.build_figures({"lape": lape, "ap": ap}, stats)
    assert set(with_stats) == {
        "layers_lape",
        "overlap_lape",
        "jaccard_lape",
        "layers_ap",
        "overlap_ap",
        "jaccard_ap",
        "lape_vs_ap",
        "entropy_lape",
        "entropy_ap",
        "profile_probability",
        "profile_pooled",
    }
    metrics = {
        "settings": {"methods": ["add"], "alpha": 1.0},
        "targets": {"de": {"baseline_rate": 0.0, "methods": {"add": {"rate": 0.5}}}},
        "sweep": [{"target": "de", "alpha": 1.0, "rate": 0.5}],
        "loss_matrix": ln.LossMatrix(["en", "de", "fr"], [1.0, 1.0, 1.0], [[1.0] * 3] * 3).to_dict(),
    }
    all_figures = report.build_figures({"lape": lape}, None, metrics)
    assert set(all_figures) == {
        "headline",
        "layers_lape",
        "overlap_lape",
        "jaccard_lape",
        "steering_rates",
        "steering_sweep",
        "loss_matrix",
    }
    assert next(iter(all_figures)) == "headline"  # the first figure of the page
    sweep = all_figures["steering_sweep"].data[0]
    assert sweep.line.color == ln.plots.language_colors(lape.langs)["de"]  # the neuron set's colours


HEADLINE_COLUMNS = [
    "target",
    "row",
    "rate [95 % interval] n",
    "quality [95 % interval]",
    "forcing score [95 % interval]",
    "split",
]


def test_headline_table_rows_columns_and_values():
    results = _results()
    table = report.headline_table(results)
    assert table.columns == HEADLINE_COLUMNS and table.row_headers == 2
    names = [*ROWS, "baseline"]
    assert [r[:2] for r in table.rows] == [
        [t, n] for t in ("de", "fr", "mean") for n in names
    ]  # the order of the headline
    add = table.rows[0]
    rate = results["targets"]["de"]["methods"]["add"]["rate_interval"]
    score = results["targets"]["de"]["methods"]["add"]["forcing_score"]
    assert add[2:] == [
        f"0.80 [{rate['low']:.2f}, {rate['high']:.2f}] n=20",
        "0.80 [0.70, 0.85]",
        f"{score:.2f} [{score - 0.1:.2f}, {score + 0.05:.2f}]",
        "test",
    ]
    assert table.rows[2][5] == "test; layer 2, alpha 2 chosen on dev"  # residual_diffmean
    baseline = table.rows[3]
    assert baseline[3] == "1.00 [1.00, 1.00]" and baseline[5] == "test"
    mean_add = table.rows[8]
    pooled = results["summary_interval"]["add"]
    assert (
        mean_add[2] == f"0.65 [{pooled['low']:.2f}, {pooled['high']:.2f}] n=40"
        and mean_add[3] == ""
        and mean_add[5] == ""
    )
    assert (
        mean_add[4] == f"{results['summary_forcing']['add']:.2f} [{results['summary_forcing']['add'] - 0.1:.2f}, "
        f"{results['summary_forcing']['add'] + 0.05:.2f}]"
    )
    for text in (
        "LAPE neurons.",
        "continue held-out en texts (20 test prompts; 5 dev)",
        "harmonic mean of rate and quality",
        "95 % intervals: Wilson for rates",
        "(200 resamples)",
        "bootstrap of the mean over targets",
    ):
        assert text in table.note
    page = table.to_html()
    assert page.startswith('<table class="data">') and page.count("<tr>") == 1 + 12


def test_headline_table_of_older_results():
    old = report.headline_table(_results(forcing=False))  # a metrics.json from before the forcing score
    assert old.columns == ["target", "row", "rate [95 % interval] n", "split"]
    assert [r[1] for r in old.rows[:4]] == [*ROWS, "baseline"]
    assert [r[3] for r in old.rows[:4]] == ["n/a", "n/a", "layer 2, alpha 2 chosen on dev", "n/a"]  # no split recorded
    assert old.rows[0][2].endswith("n=20") and "quality" not in old.note and "Samples" not in old.note
    bare = report.headline_table(_results(forcing=False, intervals=False))
    assert (
        bare.columns == ["target", "row", "rate", "split"]
        and bare.rows[0][2] == "0.80"
        and bare.rows[-1][:3] == ["mean", "baseline", "0.03"]
    )
    assert "No intervals" in bare.note
    no_ci = report.headline_table(_results(intervals=False))
    assert (
        no_ci.columns == ["target", "row", "rate", "quality", "forcing score", "split"] and no_ci.rows[0][3] == "0.80"
    )
    bos = _results()
    bos["prompts"]["kind"] = "bos"
    assert "unconditional" in report.headline_table(bos).note


def test_report_of_old_and_new_results_renders(tmp_path):
    for forcing in (True, False):
        metrics = {**_results(forcing=forcing), "sweep": pipeline.sweep_points(_results(forcing=forcing), "add", 1.0)}
        figures = report.build_figures({}, None, metrics)
        assert list(figures) == ["headline", "steering_rates", "steering_sweep"]
        tables = {"Headline": report.headline_table(metrics), "Steering": report.steering_table(metrics)}
        page = report.write_report(
            tmp_path / str(forcing), figures, metrics["settings"], tables, images=False
        ).read_text()
        assert page.index("<h2>Headline</h2>") < page.index("<h2>Steering</h2>") < page.index("<h2>Settings</h2>")
        assert page.count('<table class="data">') == 2
        assert ("forcing score [95 % interval]" in page) is forcing


def test_sweep_points_carry_quality_and_forcing_score():
    results = _results()
    points = pipeline.sweep_points(results, "add", 1.5)
    row = results["targets"]["de"]["methods"]["add"]
    fi = row["forcing_interval"]
    assert points[0] == {
        "target": "de",
        "method": "add",
        "alpha": 1.5,
        "rate": 0.8,
        "bleu": None,
        "n_neurons": 30,
        "quality": 0.8,
        "forcing_score": row["forcing_score"],
        "rate_low": row["rate_interval"]["low"],
        "rate_high": row["rate_interval"]["high"],
        "quality_low": fi["quality"]["low"],
        "quality_high": fi["quality"]["high"],
        "score_low": fi["score"]["low"],
        "score_high": fi["score"]["high"],
    }
    old = pipeline.sweep_points(_results(forcing=False, intervals=False), "add", 1.5)[1]
    assert old == {"target": "fr", "method": "add", "alpha": 1.5, "rate": 0.5, "bleu": None, "n_neurons": 30}


def test_representative_neurons_pick_the_most_specific_member():
    stats, neurons = _stats(), _neurons()
    prob = stats.probability()
    chosen = report.representative_neurons(neurons, stats)
    for i, pairs in enumerate([[(0, 0), (0, 1), (1, 2)], [(0, 1), (1, 3)], [(1, 0)]]):
        margin = {p: float(prob[i][p] - max(prob[j][p] for j in range(3) if j != i)) for p in pairs}
        best = max(margin, key=margin.get)
        assert best in chosen
    assert len(chosen) == len(set(chosen)) <= 3


# -- the page in a real browser --------------------------------------------------------------------
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--remote-debugging-pipe",
]


def _chromium_binary() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


class Chromium:
    """A headless Chromium spoken to over the DevTools protocol on fds 3 and 4 (no extra packages)."""

    def __init__(self, binary: str, profile: Path, timeout: float = 60.0) -> None:
        cmd_r, self._cmd_w = os.pipe()
        self._res_r, res_w = os.pipe()
        # Move Chromium's ends above fd 9 so that the dup2 onto 3 and 4 can never overwrite one of them.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (cmd_r, res_w)]
        os.close(cmd_r)
        os.close(res_w)
        self.log = profile / "chromium.log"
        actions = [
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, str(self.log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
            (os.POSIX_SPAWN_DUP2, high[0], 3),
            (os.POSIX_SPAWN_DUP2, high[1], 4),
        ]
        argv = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile / 'profile'}", "about:blank"]
        self.pid = os.posix_spawn(binary, argv, os.environ, file_actions=actions)
        for fd in high:
            os.close(fd)
        self.timeout, self.events, self._buf, self._id = timeout, [], b"", 0

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._res_r], [], [], left)[0]:
                raise TimeoutError(f"Chromium did not answer in time; its log ends: {self.log.read_text()[-1500:]}")
            chunk = os.read(self._res_r, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium exited; its log ends: {self.log.read_text()[-1500:]}")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile go to ``events``."""
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self._message(deadline)
            if answer.get("id") == self._id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_for(self, method: str) -> dict[str, Any]:
        """The first event called ``method`` (already received, or the next one to come)."""
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + self.timeout
        while True:
            event = self._message(deadline)
            if event.get("method") == method:
                return event
            self.events.append(event)

    def open_page(self) -> str:
        """A new tab with network, page and runtime events on; returns its session id."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Network", "Page", "Runtime"):
            self.send(f"{domain}.enable", session=session)
        return session

    def load(self, session: str, url: str) -> None:
        self.events.clear()
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, session: str, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
        return result["result"].get("value")

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        for _ in range(100):
            if os.waitpid(self.pid, os.WNOHANG)[0]:
                break
            time.sleep(0.1)
        else:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        os.close(self._cmd_w)
        os.close(self._res_r)


# Per plotly div: its id, its .main-svg nodes, the trace groups drawn and the traces it has.
_RENDERED = """JSON.stringify(Array.from(document.querySelectorAll('div.plotly-graph-div')).map(d => [
    d.id, d.querySelectorAll('.main-svg').length, d.querySelectorAll('g.trace, g.hm').length, (d._fullData || []).length]))"""


@pytest.mark.browser
def test_report_renders_offline_in_headless_chromium(study, tmp_path):
    binary = _chromium_binary()
    if binary is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    browser = Chromium(binary, tmp_path)
    try:
        session = browser.open_page()
        control = tmp_path / "control.html"
        control.write_text(
            '<img src="http://example.com/x.png"><script>fetch("https://example.org/y").catch(() => 0)</script>'
        )
        browser.load(session, control.as_uri())
        browser.evaluate(session, "1")
        assert {"http://example.com/x.png", "https://example.org/y"} <= set(browser.requests())  # the detector works

        page = (study.out / "index.html").resolve()
        browser.load(session, page.as_uri())
        deadline = time.monotonic() + 60
        while True:
            rendered = json.loads(browser.evaluate(session, _RENDERED))
            if rendered and all(svg > 0 and drawn > 0 for _, svg, drawn, _ in rendered) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert sorted(div for div, *_ in rendered) == sorted(f"figure-{name}" for name in FIGURES)
        for div, svg, drawn, traces in rendered:
            assert svg >= 1, f"{div} has no plotly SVG"
            assert traces >= 1 and drawn == traces, f"{div}: {drawn} of {traces} traces drawn"
        errors = [e["params"] for e in browser.events if e.get("method") == "Runtime.exceptionThrown"]
        assert not errors, errors
        requests = browser.requests()
        assert requests[0] == page.as_uri()
        assert [u for u in requests if not u.startswith(("file:", "data:"))] == []  # no network request
        assert [u for u in requests if u.startswith("file:")] == [page.as_uri()]  # and no other file
    finally:
        browser.close()
