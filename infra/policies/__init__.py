"""The platform's policy pack: the rules (rules.py), the pulumi_policy wrapping (__main__.py, what
`pulumi preview --policy-pack infra/policies` runs) and, here, the offline evaluation `openbell infra plan
--offline` uses over the resources recorded under pulumi's mocks. Importing this package never imports
pulumi or pulumi_policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from infra.policies.rules import RULES, Context, Resource, Rule, Violation, evaluate
from infra.validate import Resource as Recorded  # what infra.offline.Recorded offers
from infra.validate import normalise

__all__ = ["RULES", "Context", "Resource", "Rule", "Violation", "evaluate", "evaluate_recorded", "from_recorded"]


MOCK_ID_SUFFIX = "-id"
"""infra.offline's mocks give every resource the id f"{name}-id"; a property holding one refers to it."""


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def from_recorded(recorded: Iterable[Recorded]) -> list[Resource]:
    """Recorded resources as rule inputs, with `refs` rebuilt from the mocks' ids (what a real engine gives
    as property dependencies)."""
    recorded = list(recorded)
    ids = {f"{r.name}{MOCK_ID_SUFFIX}": r.name for r in recorded}
    out = []
    for r in recorded:
        refs = {prop: tuple(sorted({ids[s] for s in _strings(value) if s in ids}))
                for prop, value in r.inputs.items()}
        out.append(Resource(r.type, r.name, normalise(r.inputs), {k: v for k, v in refs.items() if v}))
    return out


def evaluate_recorded(recorded: Iterable[Recorded], environment: str,
                      rules: Sequence[Rule] = RULES) -> list[Violation]:
    """Every rule over a recorded plan, as the policy pack would judge it."""
    return evaluate(from_recorded(recorded), Context(environment), rules)
