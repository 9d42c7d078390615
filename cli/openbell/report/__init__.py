"""Run results -> JSON, JUnit XML and (later) HTML reports."""
