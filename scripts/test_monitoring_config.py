"""Checks of the Grafana dashboard and the Prometheus rules against the engine's metrics.

Every metric name the dashboard (config/grafana/sonicforge.json) or the alert rules
(config/prometheus/sonicforge-rules.yml and their tests) mention must be one that
actors/src/metrics.rs defines, so that neither can drift from the engine. The rules
themselves are checked by promtool (scripts/check-alert-rules.sh).
"""

import json
import re
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METRICS_RS = ROOT / "actors" / "src" / "metrics.rs"
DASHBOARD = ROOT / "config" / "grafana" / "sonicforge.json"
RULES = ROOT / "config" / "prometheus" / "sonicforge-rules.yml"
RULE_TESTS = ROOT / "config" / "prometheus" / "sonicforge-rules.test.yml"

# Lower-case metric names only: alert names are written SonicForgeSomething.
METRIC_NAME = re.compile(r"\bsonicforge_[a-z0-9_]+\b")
DEFINITION = re.compile(r'\b(Histogram)?Opts::new\(\s*"(sonicforge_[a-z0-9_]+)"')
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


def defined_metrics(source: str) -> set[str]:
    """The series names metrics.rs exposes: each metric, and a histogram's three series."""
    names = set()
    for histogram, name in DEFINITION.findall(source):
        if histogram:
            names.update(name + suffix for suffix in HISTOGRAM_SERIES)
        else:
            names.add(name)
    return names


def panels(dashboard: dict) -> list[dict]:
    """Every panel, those inside collapsed rows included."""
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def alert_names(rules_text: str) -> list[str]:
    return re.findall(r"^\s*- alert:\s*(\S+)\s*$", rules_text, flags=re.MULTILINE)


class MetricDefinitionsTest(unittest.TestCase):
    def test_definitions_are_found(self):
        names = defined_metrics(METRICS_RS.read_text())
        self.assertIn("sonicforge_listeners", names)
        self.assertIn("sonicforge_encode_seconds_bucket", names)
        self.assertNotIn("sonicforge_encode_seconds", names)

    def test_histograms_expose_their_three_series(self):
        source = 'HistogramOpts::new("sonicforge_x_seconds", "x") Opts::new(\n "sonicforge_y_total", "y")'
        self.assertEqual(
            defined_metrics(source),
            {
                "sonicforge_x_seconds_bucket",
                "sonicforge_x_seconds_sum",
                "sonicforge_x_seconds_count",
                "sonicforge_y_total",
            },
        )


class DashboardTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dashboard = json.loads(DASHBOARD.read_text())
        cls.metrics = defined_metrics(METRICS_RS.read_text())

    def test_every_expression_names_metrics_the_engine_defines(self):
        checked = 0
        for panel in panels(self.dashboard):
            for target in panel.get("targets", []):
                expr = target["expr"]
                named = METRIC_NAME.findall(expr)
                self.assertTrue(named, f"panel {panel['title']!r}: {expr!r} names no metric")
                for name in named:
                    self.assertIn(name, self.metrics, f"panel {panel['title']!r}: {expr!r}")
                checked += 1
        self.assertGreater(checked, 20)

    def test_descriptions_and_variables_name_defined_metrics(self):
        texts = [panel.get("description", "") for panel in panels(self.dashboard)]
        texts += [json.dumps(variable) for variable in self.dashboard["templating"]["list"]]
        for text in texts:
            for name in METRIC_NAME.findall(text):
                # A description may name a histogram by its base name.
                self.assertTrue(
                    name in self.metrics or name + "_bucket" in self.metrics, f"{name}: {text}"
                )

    def test_panels_query_the_datasource_variable(self):
        variables = {v["name"]: v for v in self.dashboard["templating"]["list"]}
        self.assertEqual(variables["datasource"]["type"], "datasource")
        self.assertEqual(variables["datasource"]["query"], "prometheus")
        for panel in panels(self.dashboard):
            if panel["type"] == "row":
                continue
            self.assertEqual(panel["datasource"]["uid"], "${datasource}", panel["title"])
            for target in panel["targets"]:
                self.assertEqual(target["datasource"]["uid"], "${datasource}", panel["title"])

    def test_panel_ids_are_unique_and_panels_do_not_overlap(self):
        ids = [panel["id"] for panel in panels(self.dashboard)]
        self.assertEqual(len(ids), len(set(ids)))
        taken = set()
        for panel in panels(self.dashboard):
            pos = panel["gridPos"]
            self.assertLessEqual(pos["x"] + pos["w"], 24, panel["title"])
            cells = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
            self.assertFalse(cells & taken, f"panel {panel['title']!r} overlaps another")
            taken |= cells

    def test_the_requested_subjects_have_panels(self):
        exprs = " ".join(
            target["expr"] for panel in panels(self.dashboard) for target in panel.get("targets", [])
        )
        for metric in [
            "sonicforge_listeners",
            "sonicforge_listener_disconnects_total",
            "sonicforge_actor_restarts_total",
            "sonicforge_mixer_underruns_total",
            "sonicforge_dead_air_frames_total",
            "sonicforge_encode_seconds_bucket",
            "sonicforge_generate_seconds_bucket",
            "sonicforge_mastering_seconds_bucket",
            "sonicforge_event_spool_bytes",
            "sonicforge_event_spool_oldest_age_seconds",
            "sonicforge_event_spool_full",
            "sonicforge_listener_connects_total",
            "sonicforge_http_requests_total",
        ]:
            self.assertIn(metric, exprs)


class AlertRulesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.metrics = defined_metrics(METRICS_RS.read_text())
        cls.rules = RULES.read_text()
        cls.tests = RULE_TESTS.read_text()

    def test_rules_and_their_tests_name_defined_metrics(self):
        for path, text in [(RULES, self.rules), (RULE_TESTS, self.tests)]:
            named = set(METRIC_NAME.findall(text))
            self.assertTrue(named, path)
            self.assertEqual(named - self.metrics, set(), f"{path} names unknown metrics")

    def test_every_alert_is_fired_by_a_unit_test(self):
        alerts = alert_names(self.rules)
        self.assertGreaterEqual(len(alerts), 8)
        self.assertEqual(len(alerts), len(set(alerts)), "alert names repeat")
        for alert in alerts:
            fired = re.search(
                rf"alertname:\s*{alert}\s*\n\s*exp_alerts:\s*\n\s*- exp_labels:", self.tests
            )
            self.assertIsNotNone(fired, f"no test fires {alert}")

    def test_every_alert_waits_and_is_labelled_and_annotated(self):
        blocks = re.split(r"^\s*- alert:", self.rules, flags=re.MULTILINE)[1:]
        for block in blocks:
            name = block.split()[0]
            self.assertRegex(block, r"\n\s*for:\s*\d+[smh]", name)
            self.assertRegex(block, r"\n\s*severity:\s*(critical|warning|info)\b", name)
            self.assertRegex(block, r"\n\s*summary:", name)
            self.assertRegex(block, r"\n\s*description:", name)


if __name__ == "__main__":
    unittest.main()
