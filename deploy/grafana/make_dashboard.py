#!/usr/bin/env python3
"""Writes radial.json, the Grafana dashboard of a radial deployment, from the panel list below.

The JSON is generated so that a change to the dashboard is a reviewable change to this file; edit
here, run `python3 deploy/grafana/make_dashboard.py`, commit both. tests/deploy/test_prometheus.py
checks that the committed JSON is this script's output and evaluates every query on a real
Prometheus scraping a real scheduler and worker.

Standard library only. Metric names and labels: docs/metrics.md.
"""

import argparse
import json
from pathlib import Path

OUTPUT = Path(__file__).resolve().with_name("radial.json")

# Every query goes to the data source the viewer picks in the `datasource` variable.
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
MODEL = 'model=~"$model"'
RATE = "[$__rate_interval]"
QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))


def target(expr, legend):
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend}


def quantile_targets(histogram, selector="", by=(), legend_prefix=""):
    """p50, p95 and p99 of a histogram over the rate window, one series per value of `by`."""
    group = ", ".join(("le",) + tuple(by))
    return [
        target(f"histogram_quantile({q}, sum by ({group}) (rate({histogram}_bucket{{{selector}}}{RATE})))",
               legend_prefix + name)
        for name, q in QUANTILES
    ]


def timeseries(title, description, unit, targets, stack=False):
    custom = {"fillOpacity": 20 if stack else 0, "showPoints": "never"}
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": {"unit": unit, "min": 0, "custom": custom}, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": targets,
    }


def stat(title, description, unit, expr, thresholds=None):
    steps = thresholds or [{"color": "green", "value": None}]
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {
            "defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
            "overrides": [],
        },
        "options": {"colorMode": "background", "graphMode": "area", "reduceOptions": {"calcs": ["lastNotNull"]}},
        "targets": [target(expr, "")],
    }


# (row title, panel width in grid units of 24, panels). Rows lay their panels out left to right.
ROWS = [
    ("Overview", 6, [
        stat("Scheduler up", "1 while Prometheus scrapes the scheduler.", "none", 'up{job="radial-scheduler"}',
             [{"color": "red", "value": None}, {"color": "green", "value": 1}]),
        stat("Jobs queued", "Jobs waiting for a worker, all models and priority bands.", "none",
             "sum(radial_queue_depth)"),
        stat("Jobs running", "Jobs on workers, all models.", "none", "radial_jobs_running"),
        stat("Workers", "Workers connected to the scheduler for the selected models, any state.", "none",
             f"sum(radial_workers{{{MODEL}}})",
             [{"color": "red", "value": None}, {"color": "green", "value": 1}]),
    ]),
    ("Latency", 8, [
        timeseries("End-to-end latency", "Submit to the job's end, every outcome (radial_job_duration_seconds).",
                   "s", quantile_targets("radial_job_duration_seconds", MODEL)),
        timeseries("Queue wait", "Time in the queue before a worker took the job, per attempt "
                   "(radial_job_queue_wait_seconds).", "s",
                   quantile_targets("radial_job_queue_wait_seconds", MODEL)),
        timeseries("Time to first chunk", "Submit to the first video bytes at the scheduler "
                   "(radial_job_time_to_first_chunk_seconds).", "s",
                   quantile_targets("radial_job_time_to_first_chunk_seconds", MODEL)),
    ]),
    ("Throughput and failures", 8, [
        timeseries("Jobs ended by code", "Jobs that ended per second, by outcome.", "reqps",
                   [target(f"sum by (code) (rate(radial_jobs_ended_total{{{MODEL}}}{RATE}))", "{{code}}"),
                    target(f"sum(rate(radial_jobs_submitted_total{{{MODEL}}}{RATE}))", "submitted")]),
        timeseries("Failure ratio by code", "Share of ended jobs that did not end OK, by code "
                   "(CANCELLED included: most are the client's choice).", "percentunit",
                   [target(f'sum by (code) (rate(radial_jobs_ended_total{{{MODEL}, code!="OK"}}{RATE}))'
                           f" / ignoring (code) group_left"
                           f" sum(rate(radial_jobs_ended_total{{{MODEL}}}{RATE}))", "{{code}}")]),
        timeseries("Requests rejected by reason", "Submit/Generate calls refused before a job existed "
                   "(invalid, quota, queue_full, unauthenticated, unavailable, other); all models.", "reqps",
                   [target(f"sum by (reason) (rate(radial_requests_rejected_total{RATE}))", "{{reason}}")]),
    ]),
    ("Queue and workers", 6, [
        timeseries("Queue depth by priority band", "Jobs waiting: high (priority > 0), normal (0), low (< 0); "
                   "all models.", "none",
                   [target("sum by (priority_band) (radial_queue_depth)", "{{priority_band}}")], stack=True),
        timeseries("Running jobs and watchers", "Jobs on workers and open Generate/Watch streams; all models.",
                   "none", [target("radial_jobs_running", "running"), target("radial_watchers", "watchers")]),
        timeseries("Workers by state", "Workers connected to the scheduler: idle, busy, draining.", "none",
                   [target(f"sum by (state) (radial_workers{{{MODEL}}})", "{{state}}")], stack=True),
        timeseries("Requeues and worker losses", "Jobs queued again by reason, and worker streams that ended "
                   "or stopped heartbeating (per second).", "ops",
                   [target(f"sum by (reason) (rate(radial_job_requeues_total{RATE}))", "requeue {{reason}}"),
                    target(f"rate(radial_worker_losses_total{RATE})", "worker lost")]),
    ]),
    ("Worker processes", 8, [
        timeseries("Denoising step time, radial vs dense", "One denoising step, by attention kind "
                   "(radial_worker_step_seconds).", "s",
                   quantile_targets("radial_worker_step_seconds", MODEL, by=("attention",),
                                    legend_prefix="{{attention}} ")[:2]),
        timeseries("Stage time p95", "Text encoding, denoising, VAE decoding and MP4 encoding of each job.", "s",
                   [target(f"histogram_quantile(0.95, sum by (le, stage) "
                           f"(rate(radial_worker_stage_seconds_bucket{{{MODEL}}}{RATE})))", "{{stage}}")]),
        timeseries("GPU memory by worker", "LibTorch's CUDA allocator: allocated, reserved and peak bytes "
                   "(0 on CPU workers).", "bytes",
                   [target(f"max by (instance, kind) (radial_worker_gpu_memory_bytes{{{MODEL}}})",
                           "{{instance}} {{kind}}")]),
        timeseries("Worker states (worker view)", "Worker processes by their own state, including loading and "
                   "warming, which the scheduler does not see.", "none",
                   [target(f"sum by (state) (radial_worker_state{{{MODEL}}})", "{{state}}")], stack=True),
        timeseries("Worker jobs by code", "Jobs the workers ran per second, by outcome.", "reqps",
                   [target(f"sum by (code) (rate(radial_worker_jobs_total{{{MODEL}}}{RATE}))", "{{code}}")]),
        timeseries("Radial mask density", "Tile density of each worker's last radial mask (1 when dense).",
                   "percentunit",
                   [target(f"max by (instance) (radial_worker_mask_density{{{MODEL}}})", "{{instance}}")]),
    ]),
    ("Streaming and store", 8, [
        timeseries("Bytes streamed", "Video bytes sent to Generate and Watch streams.", "Bps",
                   [target(f"rate(radial_stream_bytes_total{RATE})", "streamed")]),
        timeseries("Store write time", "One call's SQLite commit (radial_store_write_seconds), and failed "
                   "writes in the window.", "s",
                   quantile_targets("radial_store_write_seconds")
                   + [target(f"increase(radial_store_errors_total{RATE})", "errors")]),
        timeseries("Retained jobs and video bytes", "Ended jobs kept for GetJob/Watch/ListJobs and the bytes "
                   "of their videos.", "short",
                   [target("radial_retained_jobs", "jobs"), target("radial_retained_video_bytes", "video bytes")]),
    ]),
]

TEMPLATING = [
    {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "options": [],
        "refresh": 1,
        "regex": "",
    },
    {
        "name": "model",
        "label": "Model",
        "type": "query",
        "datasource": DATASOURCE,
        "definition": "label_values(radial_workers, model)",
        "query": {"query": "label_values(radial_workers, model)", "refId": "model"},
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "hide": 0,
        "options": [],
        "refresh": 2,
        "regex": "",
        "sort": 1,
    },
]


def dashboard():
    panels = []
    y = 0
    for title, width, row_panels in ROWS:
        panels.append({"type": "row", "title": title, "collapsed": False, "panels": [],
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
        y += 1
        height = 4 if all(p["type"] == "stat" for p in row_panels) else 8
        for i, panel in enumerate(row_panels):
            x = (i * width) % 24
            if i and x == 0:
                y += height
            panel["gridPos"] = {"h": height, "w": width, "x": x, "y": y}
            panels.append(panel)
        y += height
    for panel_id, panel in enumerate(panels, start=1):
        panel["id"] = panel_id
        for ref, query in enumerate(panel.get("targets", [])):
            query["refId"] = chr(ord("A") + ref)
    return {
        "title": "radial",
        "uid": "radial-overview",
        "description": "radial video generation: scheduler and workers (docs/metrics.md)",
        "tags": ["radial"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timezone": "",
        "annotations": {"list": []},
        "templating": {"list": TEMPLATING},
        "panels": panels,
    }


def render():
    return json.dumps(dashboard(), indent=2) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"where to write (default {OUTPUT.name})")
    args = parser.parse_args()
    args.output.write_text(render())


if __name__ == "__main__":
    main()
