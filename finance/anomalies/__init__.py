"""Anomaly flagging (DESIGN §5): detectors, stored findings, triage.

- :mod:`finance.anomalies.rules`: thresholds from ``knowledge/anomaly_rules.yaml``;
- :mod:`finance.anomalies.detectors`: one read-only detector per kind, returning ``Finding``\\ s;
- :mod:`finance.anomalies.service`: ``scan`` (detect + store once), ``set_status``,
  ``list_anomalies``.
"""

from finance.anomalies.detectors import DETECTORS, Finding, Scope, fingerprint
from finance.anomalies.rules import KINDS, AnomalyError, AnomalyRules, load_rules
from finance.anomalies.service import (
    SCANNERS,
    TRIAGERS,
    AnomalyView,
    ScanReport,
    detect,
    list_anomalies,
    rules_for,
    scan,
    set_status,
)

__all__ = [
    "DETECTORS", "KINDS", "SCANNERS", "TRIAGERS", "AnomalyError", "AnomalyRules", "AnomalyView",
    "Finding", "ScanReport", "Scope", "detect", "fingerprint", "list_anomalies", "load_rules",
    "rules_for", "scan", "set_status",
]
