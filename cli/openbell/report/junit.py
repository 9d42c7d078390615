"""JUnit XML for CI: one test case per checked item, failures carrying the verdict's reasons."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Case:
    """One JUnit test case. `outcome` is pass, fail, inconclusive or skipped."""

    name: str
    classname: str
    outcome: str
    message: str = ""
    details: str = ""
    time_s: float = 0.0


def render(suite: str, cases: list[Case], inconclusive_fails: bool = True) -> str:
    """A <testsuites> document; an inconclusive case is a failure unless `inconclusive_fails` is False."""
    failing = {"fail", "inconclusive"} if inconclusive_fails else {"fail"}
    failures = sum(1 for c in cases if c.outcome in failing)
    skipped = sum(1 for c in cases if c.outcome in {"skipped", "inconclusive"} - failing)
    root = ET.Element("testsuites", name=suite, tests=str(len(cases)), failures=str(failures))
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)), failures=str(failures),
                       errors="0", skipped=str(skipped), time=f"{sum(c.time_s for c in cases):.3f}")
    for case in cases:
        tc = ET.SubElement(ts, "testcase", name=case.name, classname=case.classname, time=f"{case.time_s:.3f}")
        if case.outcome in failing:
            el = ET.SubElement(tc, "failure", message=case.message, type=case.outcome)
            el.text = case.details or case.message
        elif case.outcome in ("skipped", "inconclusive"):
            ET.SubElement(tc, "skipped", message=case.message)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write(path: str | Path, suite: str, cases: list[Case], inconclusive_fails: bool = True) -> None:
    Path(path).write_text(render(suite, cases, inconclusive_fails), encoding="utf-8")
