"""`llmprep status`: a release's autoscaling at a glance, live (the seed's `kubectl get hpa -w`, with the signal beside it).

`collecting` reads the cluster into plain data (`ReleaseStatus`: HPAs, their metrics and
events, the scaled workload's pods, one line per problem); `showing` renders it with rich and
refreshes it live. Library use:

    from llmprep import status
    read = status.release_status("my-release", None)
    print(json.dumps(read().to_dict()))
"""

from llmprep.status.collecting import (
    EVENTS_SHOWN,
    RELEASE_LABELS,
    SERVICE_ACCOUNT_NAMESPACE,
    AutoscalerStatus,
    Condition,
    Forbidden,
    MetricStatus,
    NotFound,
    PodStatus,
    ReleaseStatus,
    ScalingEvent,
    StatusError,
    collect,
    connect,
    default_namespace,
    release_status,
    show_quantity,
)
from llmprep.status.showing import render, watch
from llmprep.units import parse_quantity

__all__ = [
    "AutoscalerStatus",
    "collect",
    "Condition",
    "connect",
    "default_namespace",
    "EVENTS_SHOWN",
    "Forbidden",
    "MetricStatus",
    "NotFound",
    "parse_quantity",
    "PodStatus",
    "release_status",
    "RELEASE_LABELS",
    "ReleaseStatus",
    "render",
    "ScalingEvent",
    "SERVICE_ACCOUNT_NAMESPACE",
    "show_quantity",
    "StatusError",
    "watch",
]
