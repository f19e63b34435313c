"""The monitoring in deploy/grafana and deploy/prometheus, checked against a real Prometheus (2.42,
Debian's package) scraping a real radial-scheduler and radial-worker that ran real jobs.

Static checks: the committed dashboard JSON is make_dashboard.py's output; promtool check rules and
promtool test rules (the alerts' unit tests); every metric named is documented in docs/metrics.md.

Live checks (one stack for the module, every process in its own process group and killed at the
end, pass or fail): the scheduler and a worker on the tiny bundle; radialctl runs two jobs that
succeed, one rejected request, one job that fails (DEADLINE_EXCEEDED: --queue-timeout 1 while the
worker is busy) and one cancelled while running; Prometheus scrapes both every second with the
rules loaded. Then every query of every dashboard panel (template variables substituted) and every
rule's expression must return data, and a few values must equal what the test did. Alerts that by
design do not fire on this healthy stack must return nothing, and each series they read must exist
instead. Last, the worker and then the scheduler are stopped and their alerts must go pending.

Grafana itself is not installable here; evaluating its queries on Prometheus is the check.

Environment (set by ctest): RADIAL_SCHEDULER_BIN, RADIAL_WORKER_BIN, RADIAL_RADIALCTL_BIN,
RADIAL_TEST_BUNDLE; prometheus and promtool on PATH (scripts/setup.sh installs them)."""

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULE_FILES = [PROMETHEUS / "recording_rules.yml", PROMETHEUS / "alerts.yml"]
METRICS_DOC = ROOT / "docs" / "metrics.md"
# The worker's families (docs/metrics.md, worker table): their panels need a worker with /metrics.
WORKER_FAMILIES = re.compile(r"\bradial_worker_(state|jobs_total|stage_seconds|step_seconds|mask_density|"
                             r"gpu_memory_bytes|model_load_seconds|warmup_seconds)")
# Metric selectors in an expression: radial_* families, recorded series (level:metric:operations) and up.
SELECTOR = re.compile(r"\b((?:radial_\w+|[a-z_]+:radial_\w+:\w+|up)(?:\{[^}]*\})?)")
RATE_INTERVAL = "1m"
WAIT_SECONDS = 30


def _env(name):
    value = os.environ.get(name)
    if not value:
        pytest.skip(f"{name} is not set (ctest sets it)")
    return os.path.abspath(value)


def _tool(name):
    path = shutil.which(name)
    if not path:
        pytest.skip(f"{name} is not installed (scripts/setup.sh installs Debian's prometheus)")
    return path


def _run(args, timeout=60, cwd=None):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def _dashboard():
    return json.loads((GRAFANA / "radial.json").read_text())


def _panel_queries(dashboard):
    """[(panel title, expr)] of every panel target."""
    return [(panel["title"], query["expr"]) for panel in dashboard["panels"] for query in panel.get("targets", [])]


def _rules():
    """Every rule of the rule files, as promtool reads them."""
    return [rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"]]


# ---------------------------------------------------------------- static checks


def test_dashboard_json_is_the_scripts_output(tmp_path):
    out = tmp_path / "radial.json"
    result = _run([sys.executable, GRAFANA / "make_dashboard.py", "--output", out])
    assert result.returncode == 0, result.stderr
    assert out.read_text() == (GRAFANA / "radial.json").read_text(), \
        "deploy/grafana/radial.json is stale: run python3 deploy/grafana/make_dashboard.py and commit it"


def test_dashboard_uses_the_datasource_and_model_variables():
    dashboard = _dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["model"]["includeAll"] and variables["model"]["allValue"] == ".*"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for query in panel["targets"]:
            assert query["datasource"]["uid"] == "${datasource}", panel["title"]
    # Every panel reading a family with a model label (docs/metrics.md) filters on the variable.
    per_model = set(re.findall(r"^\| `(radial_\w+)` \| \w+ \| [^|]*`model`", METRICS_DOC.read_text(), re.M))
    assert "radial_job_duration_seconds" in per_model and "radial_queue_depth" not in per_model
    for title, expr in _panel_queries(dashboard):
        for name in re.findall(r"(?<![\w:])radial_\w+", expr):
            if re.sub(r"_(bucket|count|sum)$", "", name) in per_model:
                assert 'model=~"$model"' in expr, (title, expr)


def test_every_metric_named_is_documented():
    documented = set(re.findall(r"`(radial_\w+)`", METRICS_DOC.read_text()))
    exprs = [expr for _, expr in _panel_queries(_dashboard())] + [rule["expr"] for rule in _rules()]
    for expr in exprs:
        for name in re.findall(r"(?<![\w:])radial_\w+", expr):
            family = re.sub(r"_(bucket|count|sum)$", "", name)
            assert family in documented, f"{name} (in {expr}) is not in docs/metrics.md"
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    for expr in exprs:
        for name in re.findall(r"\b[a-z_]+:radial_\w+:\w+", expr):
            assert name in recorded, f"{name} (in {expr}) is not a recording rule"


def test_promtool_checks_and_unit_tests_the_rules():
    promtool = _tool("promtool")
    result = _run([promtool, "check", "rules", *RULE_FILES])
    assert result.returncode == 0, result.stdout + result.stderr
    # rules_test.yaml names its rule files relative to itself.
    result = _run([promtool, "test", "rules", "rules_test.yaml"], timeout=120, cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr
    result = _run([promtool, "check", "config", PROMETHEUS / "prometheus.yml"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_severity_summary_and_description():
    alerts = [rule for rule in _rules() if "alert" in rule]
    assert {rule["alert"] for rule in alerts} == {
        "RadialSchedulerDown", "RadialNoWorkerForModel", "RadialQueueWaitHigh", "RadialJobFailureRatioHigh",
        "RadialWorkersFlapping", "RadialStoreErrors"}
    tests = (PROMETHEUS / "rules_test.yaml").read_text()
    for rule in alerts:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert f"alertname: {rule['alert']}" in tests, f"{rule['alert']} has no promtool unit test"
    for rule in _rules():
        if "record" in rule:
            assert re.fullmatch(r"[a-z_]+:radial_[a-z_]+:[a-z0-9_]+", rule["record"]), rule["record"]


# ---------------------------------------------------------------- the live stack


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


class Stack:
    """The processes of the live test and how to reach them; stops them all in close()."""

    def __init__(self, work):
        self.work = work
        self.processes = {}
        self.logs = {}
        self.stopped = set()  # stopped by the test, so not a failure when they are gone

    def start(self, name, args):
        log = self.work / f"{name}.log"
        self.logs[name] = log
        with open(log, "w") as out:
            # Its own session, so stopping it reaches any child it started.
            self.processes[name] = subprocess.Popen([str(a) for a in args], stdout=out, stderr=subprocess.STDOUT,
                                                    start_new_session=True, cwd=self.work)

    def stop(self, name, sig=signal.SIGTERM):
        self.stopped.add(name)
        process = self.processes[name]
        if process.poll() is None:
            os.killpg(process.pid, sig)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def close(self):
        for name in reversed(list(self.processes)):
            try:
                self.stop(name)
            except ProcessLookupError:
                pass

    def wait(self, what, predicate, seconds=WAIT_SECONDS):
        """Polls predicate until it is true; fails after `seconds`, or at once when a process the
        test did not stop has exited, with the tails of the logs."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            exited = [name for name, p in self.processes.items() if name not in self.stopped and p.poll() is not None]
            if exited:
                self.fail(f"{', '.join(exited)} exited while waiting for {what}")
            try:
                if predicate():
                    return
            except (OSError, ValueError):
                pass  # not listening yet, or a half-written file
            time.sleep(0.2)
        self.fail(f"timed out after {seconds} s waiting for {what}")

    def fail(self, message):
        tails = "".join(f"\n--- {log.name} (last 3000 characters):\n{log.read_text()[-3000:]}"
                        for log in self.logs.values() if log.exists())
        pytest.fail(message + tails)

    def ctl(self, *args, timeout=60):
        return _run([self.radialctl, "--server", self.address, *args], timeout=timeout, cwd=self.work)

    def query(self, expr):
        """An instant query's result list; the query must be valid."""
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            body = json.loads(_get(url))
        except urllib.error.HTTPError as error:
            pytest.fail(f"Prometheus refused {expr!r}: {error.read().decode()}")
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, expr):
        result = self.query(expr)
        assert len(result) == 1, (expr, result)
        return float(result[0]["value"][1])

    def value_is(self, expr, expected):
        """For waits: whether expr is one sample equal to expected (no sample yet: False)."""
        result = self.query(expr)
        return len(result) == 1 and float(result[0]["value"][1]) == expected


def _scrape_config(template, targets, rule_files):
    """deploy/prometheus/prometheus.yml with the test's targets, 1 s intervals and absolute rule paths.
    The job names stay the example's, since the alerts read up{job="radial-scheduler"}."""
    config = yaml.safe_load(template.read_text())
    assert sorted(job["job_name"] for job in config["scrape_configs"]) == ["radial-scheduler", "radial-worker"]
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"}
    config["rule_files"] = [str(path) for path in rule_files]
    config["scrape_configs"] = [dict(job, static_configs=[{"targets": [targets[job["job_name"]]]}])
                                for job in config["scrape_configs"] if job["job_name"] in targets]
    return yaml.safe_dump(config, sort_keys=False)


def _job_state(stack, job_id):
    result = stack.ctl("status", job_id, "--json", timeout=20)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["state"]


def _run_jobs(stack):
    """Two jobs OK, one rejected, one DEADLINE_EXCEEDED in the queue, one cancelled while running.
    Returns what the metrics must count."""
    ok = []
    result = stack.ctl("generate", "a lighthouse at night", "--steps", "2", "--frames", "5", "-o", "ok1.mp4")
    assert result.returncode == 0, result.stdout + result.stderr
    ok.append(stack.work / "ok1.mp4")
    result = stack.ctl("generate", "x", "--width", "100", "-o", "rejected.mp4")
    assert result.returncode == 3, f"an invalid width is rejected (exit 3): {result.stdout}{result.stderr}"

    # A long job keeps the only worker busy while a second one times out in the queue.
    result = stack.ctl("submit", "a long one", "--steps", "40", "--frames", "17")
    assert result.returncode == 0, result.stderr
    long_id = result.stdout.strip()
    stack.wait("the long job to run", lambda: _job_state(stack, long_id) == "JOB_STATE_RUNNING")
    result = stack.ctl("generate", "too late", "--steps", "2", "--frames", "5", "--queue-timeout", "1",
                       "-o", "late.mp4")
    assert result.returncode == 4, f"a queue timeout fails the job (exit 4): {result.stdout}{result.stderr}"
    assert _job_state(stack, long_id) == "JOB_STATE_RUNNING", "the long job must still run to be cancelled"
    result = stack.ctl("cancel", long_id)
    assert result.returncode == 0, result.stdout + result.stderr
    stack.wait("the long job to be cancelled", lambda: _job_state(stack, long_id) == "JOB_STATE_CANCELLED")

    result = stack.ctl("generate", "a red boat", "--steps", "2", "--frames", "5", "-o", "ok2.mp4")
    assert result.returncode == 0, result.stdout + result.stderr
    ok.append(stack.work / "ok2.mp4")
    return {"submitted": 4, "OK": 2, "DEADLINE_EXCEEDED": 1, "CANCELLED": 1, "rejected_invalid": 1,
            "ok_bytes": sum(path.stat().st_size for path in ok)}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    scheduler_bin = _env("RADIAL_SCHEDULER_BIN")
    worker_bin = _env("RADIAL_WORKER_BIN")
    bundle = _env("RADIAL_TEST_BUNDLE")
    prometheus = _tool("prometheus")
    stack = Stack(tmp_path_factory.mktemp("monitoring"))
    stack.radialctl = _env("RADIAL_RADIALCTL_BIN")
    stack.model = json.loads((Path(bundle) / "manifest.json").read_text())["name"]
    stack.worker_metrics = "--metrics-listen" in _run([worker_bin, "--help"]).stdout
    try:
        targets = {"radial-scheduler": f"127.0.0.1:{_free_port()}"}
        port_file = stack.work / "port"
        stack.start("scheduler", [scheduler_bin, "--listen", "127.0.0.1:0", "--port-file", port_file,
                                  "--data-dir", stack.work / "data", "--metrics-listen", targets["radial-scheduler"]])
        stack.wait("the scheduler's port file", lambda: port_file.read_text().strip().isdigit())
        stack.address = f"127.0.0.1:{port_file.read_text().strip()}"
        worker_args = [worker_bin, "--bundle", bundle, "--scheduler", stack.address, "--drain-seconds", "0",
                       "--worker-id", "monitoring-test", "--warmup", "off"]
        if stack.worker_metrics:
            targets["radial-worker"] = f"127.0.0.1:{_free_port()}"
            worker_args += ["--metrics-listen", targets["radial-worker"]]
        stack.start("worker", worker_args)

        stack.config = stack.work / "prometheus.yml"
        stack.config.write_text(_scrape_config(PROMETHEUS / "prometheus.yml", targets, RULE_FILES))
        web = f"127.0.0.1:{_free_port()}"
        stack.prometheus_url = f"http://{web}"
        stack.start("prometheus", [prometheus, "--config.file", stack.config, "--storage.tsdb.path",
                                   stack.work / "tsdb", "--web.listen-address", web])
        stack.targets = targets

        def targets_up():
            active = json.loads(_get(f"{stack.prometheus_url}/api/v1/targets"))["data"]["activeTargets"]
            return sorted(t["labels"]["job"] for t in active if t["health"] == "up") == sorted(targets)
        stack.wait("Prometheus to scrape every target", targets_up)
        stack.wait("the worker to announce its model",
                   lambda: stack.value_is(f'sum(radial_workers{{model="{stack.model}", state="idle"}})', 1))

        stack.expected = _run_jobs(stack)

        # Prometheus has seen the end state once the running gauge is back to 0, every job ended,
        # and the rules have been evaluated on it.
        def settled():
            return (stack.value_is("sum(radial_jobs_ended_total)", 4) and stack.value_is("radial_jobs_running", 0)
                    and stack.value_is(f'sum(radial_workers{{model="{stack.model}", state="idle"}})', 1)
                    and (not stack.worker_metrics
                         or stack.value_is('sum(radial_worker_jobs_total{code="OK"})', stack.expected["OK"])))
        stack.wait("Prometheus to see every job end", settled)
        # Then a rule evaluation later than that scrape (the one rule group is evaluated at once).
        settled_at = time.time()
        stack.wait("the rules to be evaluated on the end state", lambda: any(
            float(sample["value"][1]) > settled_at
            for sample in stack.query("timestamp(model:radial_jobs_failed:ratio_rate15m)")))
        yield stack
    finally:
        stack.close()


def test_generated_scrape_config_is_valid(stack):
    result = _run([_tool("promtool"), "check", "config", stack.config])
    assert result.returncode == 0, result.stdout + result.stderr


def test_counts_equal_what_the_test_did(stack):
    expected = stack.expected
    model = f'model="{stack.model}"'
    assert stack.value(f"sum(radial_jobs_submitted_total{{{model}}})") == expected["submitted"]
    for code in ("OK", "DEADLINE_EXCEEDED", "CANCELLED"):
        assert stack.value(f'sum(radial_jobs_ended_total{{{model}, code="{code}"}})') == expected[code], code
    assert stack.value('sum(radial_jobs_ended_total{code=~"INTERNAL|UNAVAILABLE"})') == 0
    assert stack.value('radial_requests_rejected_total{reason="invalid"}') == expected["rejected_invalid"]
    assert stack.value("sum(radial_job_duration_seconds_count)") == expected["submitted"]
    # Both OK jobs' videos went to their Generate streams; the failed one never started and the
    # cancelled one had no watcher.
    assert stack.value("radial_stream_bytes_total") == expected["ok_bytes"]
    assert stack.value("sum(radial_queue_depth)") == 0
    assert stack.value('radial_build_info{component="scheduler"}') == 1
    # Three of the four submitted jobs reached the worker (the timed-out one never left the queue).
    assert stack.value("sum(radial_job_queue_wait_seconds_count)") == 3
    # The recorded failure ratio: 2 of the 4 ended jobs not OK (every series of the model was
    # scraped from 0 at the same instants, so the rates' extrapolation cancels out).
    ratio = stack.value(f"model:radial_jobs_failed:ratio_rate15m{{{model}}}")
    assert math.isclose(ratio, 0.5, rel_tol=1e-9), ratio
    # The median end-to-end latency lies inside the histogram's buckets (0.5 s to 1 h).
    p50 = stack.value("histogram_quantile(0.5, sum by (le) (rate(radial_job_duration_seconds_bucket[5m])))")
    assert 0 < p50 <= 3600 and math.isfinite(p50), p50
    if stack.worker_metrics:
        assert stack.value('radial_build_info{component="worker"}') == 1
        assert stack.value(f'sum(radial_worker_jobs_total{{{model}, code="OK"}})') == expected["OK"]
        # The worker ran three jobs: both OK ones and the cancelled one.
        assert stack.value(f'sum(radial_worker_jobs_total{{{model}, code="CANCELLED"}})') == expected["CANCELLED"]
        assert stack.value(f"sum(radial_worker_jobs_total{{{model}}})") == 3
        # Both OK jobs denoised 2 steps each; the cancelled one got some way into its 40.
        assert stack.value(f'sum(radial_worker_stage_seconds_count{{{model}, stage="denoise"}})') >= 2
        assert stack.value(f"sum(radial_worker_step_seconds_count{{{model}}})") >= 4
        assert stack.value(f'sum(radial_worker_state{{{model}, state="idle"}})') == 1


def _substituted(expr, model):
    return expr.replace("$__rate_interval", RATE_INTERVAL).replace("$model", model)


def _check_panels(stack, worker):
    dashboard = _dashboard()
    checked = 0
    # All models (the variable's allValue), and the tiny model alone, regex-escaped inside a PromQL
    # string as Grafana does it.
    for model in (".*", re.escape(stack.model).replace("\\", "\\\\")):
        for title, expr in _panel_queries(dashboard):
            if bool(WORKER_FAMILIES.search(expr)) != worker:
                continue
            query = _substituted(expr, model)
            assert "$" not in query, f"a template variable the test does not know: {query}"
            assert stack.query(query), f"panel {title!r} shows nothing: {query}"
            checked += 1
    return checked


def test_every_scheduler_panel_query_returns_data(stack):
    assert _check_panels(stack, worker=False) > 20
    # The model variable's values, as Grafana's label_values() asks for them.
    variable = next(v for v in _dashboard()["templating"]["list"] if v["name"] == "model")
    metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["query"]["query"]).groups()
    url = f"{stack.prometheus_url}/api/v1/label/{label}/values?" + urllib.parse.urlencode({"match[]": metric})
    assert stack.model in json.loads(_get(url))["data"]


# Alerts that should fire on this stack: 2 of the 4 ended jobs were not OK (a ratio of 0.5).
FIRING_NOW = {"RadialJobFailureRatioHigh"}


def _check_rules(stack, worker):
    checked = 0
    for rule in _rules():
        expr = rule["expr"]
        if bool(WORKER_FAMILIES.search(expr)) != worker:
            continue
        checked += 1
        if "record" in rule:
            assert stack.query(expr), f"recording rule {rule['record']} has no data: {expr}"
            assert stack.query(rule["record"]), f"Prometheus did not record {rule['record']}"
        elif rule["alert"] in FIRING_NOW:
            assert stack.query(expr), f"{rule['alert']} should fire on this stack: {expr}"
            alerts = stack.query(f'ALERTS{{alertname="{rule["alert"]}"}}')
            assert alerts, f"Prometheus did not evaluate {rule['alert']}"
        else:
            # A healthy stack must not alert, so the expression is empty by design: every series it
            # reads must exist instead, or the alert could never fire.
            assert not stack.query(expr), f"{rule['alert']} fires on a healthy stack: {expr}"
            selectors = SELECTOR.findall(expr)
            assert selectors, expr
            for selector in selectors:
                assert stack.query(selector), f"{rule['alert']} reads {selector}, which has no data"
    return checked


def test_every_scheduler_rule_expression_returns_data(stack):
    assert _check_rules(stack, worker=False) >= 18


def test_every_worker_panel_query_and_rule_returns_data(stack):
    if not stack.worker_metrics:
        pytest.skip("radial-worker has no --metrics-listen yet: the worker panels and rules are not checked")
    assert _check_panels(stack, worker=True) > 0
    assert _check_rules(stack, worker=True) > 0


def test_alerts_go_pending_when_the_worker_and_then_the_scheduler_stop(stack):
    # Runs last: it takes the stack down.
    def pending(alertname, **labels):
        matchers = "".join(f', {key}="{value}"' for key, value in labels.items())
        return bool(stack.query(f'ALERTS{{alertname="{alertname}", alertstate="pending"{matchers}}}'))

    stack.stop("worker")
    stack.wait("RadialNoWorkerForModel to go pending", lambda: pending("RadialNoWorkerForModel", model=stack.model))
    stack.stop("scheduler")
    stack.wait("RadialSchedulerDown to go pending", lambda: pending("RadialSchedulerDown"))
    # While the scheduler is down it alone alerts, not every model it served.
    stack.wait("RadialNoWorkerForModel to be silenced", lambda: not pending("RadialNoWorkerForModel"))
