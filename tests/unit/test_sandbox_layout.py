"""Where the sandbox finds what it runs."""

from __future__ import annotations


def test_the_kafka_version_the_sandbox_expects_is_the_one_maven_fetches() -> None:
    from openbell.paths import repo_root
    from openbell.sandbox.layout import KAFKA_VERSION

    pom = (repo_root() / "services" / "kafka" / "pom.xml").read_text()
    assert f"<kafka.version>{KAFKA_VERSION}</kafka.version>" in pom
