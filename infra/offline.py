"""Run the Pulumi program without the pulumi CLI or a cloud: pulumi's own mock runtime
(`pulumi.runtime.set_mocks`) stands in for the engine, and every resource the program declares is
recorded with its type, name, inputs and parent. `openbell infra plan --offline` and the tests both use it.

The mocks answer what a real provider would compute for the few outputs the program reads back (an EKS
cluster's endpoint and OIDC issuer, ARNs, ids), so the whole graph resolves.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from infra.config import PlatformConfig

PROJECT = "openbell"
_SECRET_SIG = "4dabf18193072939515e22adb298388d"  # how pulumi's RPC layer marks a secret value


@dataclass(frozen=True)
class Recorded:
    """One resource the program declared: what a plan shows and a policy checks."""

    type: str
    name: str
    inputs: dict[str, Any]
    provider: str | None = None  # the provider reference (a Kubernetes Provider for kubernetes:* resources)

    @property
    def kind(self) -> str | None:
        """Kubernetes kind for kubernetes:* resources (e.g. "Deployment"), else None."""
        if not self.type.startswith("kubernetes:"):
            return None
        return self.type.rsplit(":", 1)[-1]


def _computed(type_: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Outputs a real provider would add to the inputs (only the ones the program reads)."""
    out = dict(inputs)
    account = "123456789012"
    region = "us-east-1"
    out.setdefault("arn", f"arn:aws:{type_.split(':')[1].split('/')[0]}:{region}:{account}:{name}")
    if type_ == "aws:eks/cluster:Cluster":
        out.update({
            "endpoint": f"https://{name}.gr7.{region}.eks.amazonaws.com",
            "certificateAuthority": {"data": "TU9DSy1DQQ=="},
            "identities": [{"oidcs": [{"issuer": f"https://oidc.eks.{region}.amazonaws.com/id/MOCK{name.upper()}"}]}],
            "vpcConfig": {**(inputs.get("vpcConfig") or {}), "clusterSecurityGroupId": f"sg-{name}"},
            "name": inputs.get("name", name),
        })
    elif type_ == "aws:iam/role:Role":
        out["arn"] = f"arn:aws:iam::{account}:role/{inputs.get('name', name)}"
        out.setdefault("name", name)
    elif type_ == "aws:sqs/queue:Queue":
        out["url"] = f"https://sqs.{region}.amazonaws.com/{account}/{inputs.get('name', name)}"
        out.setdefault("name", name)
    elif type_ == "aws:s3/bucketV2:BucketV2" or type_ == "aws:s3/bucket:Bucket":
        out.setdefault("bucket", inputs.get("bucket") or name)
    elif type_ == "aws:kms/key:Key":
        out["keyId"] = f"key-{name}"
    elif type_ == "kubernetes:core/v1:Secret" and inputs.get("stringData"):
        # The API server folds stringData into base64 data: the live object has only data.
        import base64

        raw = inputs["stringData"]
        secret = isinstance(raw, dict) and _SECRET_SIG in raw
        plain = raw["value"] if secret else raw
        if isinstance(plain, dict) and all(isinstance(v, str) for v in plain.values()):
            data = {k: base64.b64encode(v.encode()).decode() for k, v in plain.items()}
            out["data"] = {_SECRET_SIG: "1b47061264138c4ac30d75fd1eb44270", "value": data} if secret else data
    return out


class RecordingMocks:
    """pulumi.runtime.Mocks that records every resource and answers function calls plausibly."""

    def __init__(self, cfg: PlatformConfig) -> None:
        self.cfg = cfg
        self.resources: list[Recorded] = []
        self._lock = threading.Lock()

    def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        with self._lock:
            self.resources.append(Recorded(args.typ, args.name, inputs, provider=args.provider or None))
        return f"{args.name}-id", _computed(args.typ, args.name, inputs)

    def call(self, args: Any) -> tuple[dict[str, Any], list[tuple[str, str]]] | dict[str, Any]:
        token = args.token
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": "123456789012", "arn": "arn:aws:iam::123456789012:user/mock", "userId": "mock"}
        if token == "aws:index/getRegion:getRegion":
            return {"name": self.cfg.region, "region": self.cfg.region, "id": self.cfg.region}
        if token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com"}
        if token == "aws:iam/getPolicyDocument:getPolicyDocument":
            import json

            statements = args.args.get("statements") or []
            return {"json": json.dumps({"Version": "2012-10-17", "Statement": statements})}
        return {}


@dataclass
class Plan:
    """The recorded graph of one stack's program."""

    stack: str
    config: PlatformConfig
    resources: list[Recorded] = field(default_factory=list)

    def of_type(self, type_: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str) -> Recorded:
        for r in self.resources:
            if r.name == name:
                return r
        raise KeyError(name)


def run(cfg: PlatformConfig, stack: str, program: Any | None = None) -> Plan:
    """Declare the whole platform (or `program(cfg)`) under pulumi's mocks and return what was declared."""
    import pulumi

    mocks = RecordingMocks(cfg)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=True)  # type: ignore[arg-type]
    if program is None:
        from infra.program import build as build_platform

        program = build_platform
    build: Any = program

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def declare() -> Any:
        build(cfg)
        return pulumi.Output.from_input(True)

    declare()
    return Plan(stack, cfg, list(mocks.resources))
