"""The policy pack pulumi runs (PulumiPolicy.yaml, runtime python): each rule of rules.py wrapped as a
pulumi_policy ResourceValidationPolicy (and a StackValidationPolicy for its whole-stack part), all
mandatory.

The environment a rule sees (prod turns on the 3-zone checks) is the pack's `environment` config when set
(`--policy-pack-config`), else the stack's name (stacks are named dev, staging, prod). Values a preview
cannot know yet arrive as UNKNOWN and never fail a check.
"""

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # `infra` importable when pulumi runs this file

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from infra.policies.rules import RULES, UNKNOWN, Context, Resource, Rule

CONFIG = PolicyConfigSchema(properties={"environment": {"type": "string", "enum": ["dev", "staging", "prod"]}})


def plain(value: Any) -> Any:
    """pulumi_policy's unknown-checking proxies as plain dicts and lists (secrets unwrapped, integral floats as
    ints), values a preview cannot know as UNKNOWN."""
    from pulumi_policy import Secret
    from pulumi_policy.proxy import UnknownValueError

    if isinstance(value, Secret):
        return plain(value.value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        out = {}
        for key in value:
            try:
                out[key] = plain(value[key])
            except UnknownValueError:
                out[key] = UNKNOWN
        return out
    if not isinstance(value, str | bytes) and hasattr(value, "__len__") and hasattr(value, "__getitem__"):
        result = []
        for i in range(len(value)):
            try:
                result.append(plain(value[i]))
            except UnknownValueError:
                result.append(UNKNOWN)
        return result
    return value


def environment(config: Mapping[str, Any], urn: str) -> str:
    """The pack's `environment` config, else the stack being previewed (PULUMI_STACK, which the engine sets
    for analyzers, or the stack in urn:pulumi:<stack>::<project>::...)."""
    configured = config.get("environment") or os.environ.get("OPENBELL_ENVIRONMENT")
    if isinstance(configured, str) and configured:
        return configured
    if os.environ.get("PULUMI_STACK"):
        return os.environ["PULUMI_STACK"].rsplit("/", 1)[-1]
    parts = urn.split(":")
    return parts[2] if len(parts) > 2 and parts[0] == "urn" else "dev"


def resource_policy(rule: Rule) -> ResourceValidationPolicy:
    check = rule.resource_check
    assert check is not None

    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        ctx = Context(environment(args.get_config(), args.urn))
        for message in check(args.resource_type, plain(args.props), ctx):
            report(message, None)

    return ResourceValidationPolicy(name=rule.name, description=rule.description, validate=validate,
                                    enforcement_level=EnforcementLevel.MANDATORY, config_schema=CONFIG)


def stack_policy(rule: Rule) -> StackValidationPolicy:
    check = rule.stack_check
    assert check is not None

    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        if not args.resources:
            return
        ctx = Context(environment(args.get_config(), args.resources[0].urn))
        urns = {r.name: r.urn for r in args.resources}
        resources = [Resource(r.resource_type, r.name, plain(r.props),
                              {prop: tuple(d.name for d in deps) for prop, deps in r.property_dependencies.items()})
                     for r in args.resources]
        for resource, message in check(resources, ctx):
            report(message, urns.get(resource.name))

    # A policy name is unique in a pack: the whole-stack half of a rule carries a suffix.
    name = rule.name if rule.resource_check is None else f"{rule.name}-stack"
    return StackValidationPolicy(name=name, description=rule.description, validate=validate,
                                 enforcement_level=EnforcementLevel.MANDATORY, config_schema=CONFIG)


def policies() -> list[Any]:
    out: list[Any] = []
    for rule in RULES:
        if rule.resource_check is not None:
            out.append(resource_policy(rule))
        if rule.stack_check is not None:
            out.append(stack_policy(rule))
    return out


if __name__ == "__main__":
    PolicyPack(name="openbell-platform", enforcement_level=EnforcementLevel.MANDATORY, policies=policies())
