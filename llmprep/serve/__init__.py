"""In the pod: compose the inference server's command line and run it (`llmprep serve`, `llmprep drain`).

`plan` finds what to run (a model repository folder, or what `prepare` put in the cache) and
turns the spec and the pod's facts into a plan; `compose` writes the argv (pure); `group` places
this pod in a LeaderWorkerSet group; `drift` refuses an artifact built for another pod;
`supervise` runs the plan and drains it on SIGTERM; `triton` locates `tritonserver` and composes
its options; `drain` holds a terminating pod until its connections finish. Library use:

    from llmprep import serve
    plan = serve.make_plan(serve.ServeRequest(spec, repository=path), env=os.environ)
    print(serve.render_command(plan.argv))

`from llmprep import serve` keeps working: the names below are this package's face.
"""

from llmprep.files import write_text_atomic as write_atomically  # the face's old name for it
from llmprep.serve.compose import (
    FORWARD_NAMES,
    FORWARD_PREFIXES,
    LLMAPI_LAUNCH,
    RANK_MODELS,
    RUNTIMES,
    ServeOptions,
    ServePlan,
    compose,
    compose_worker,
    forwarded_names,
    rank_args,
    render_command,
)
from llmprep.serve.drift import PodFacts, check_drift
from llmprep.serve.group import (
    DEFAULT_HOSTFILE,
    DEFAULT_SSH_DIR,
    DEFAULT_SSH_PORT,
    DEFAULT_WAIT_WORKERS_SECS,
    LWS_GROUP_SIZE,
    LWS_LEADER_ADDRESS,
    LWS_WORKER_INDEX,
    Group,
    SshOptions,
    discover_group,
    group_hosts,
    hostfile_text,
    wait_for_workers,
)
from llmprep.serve.plan import (
    REPOSITORY_MARKER,
    ROLES,
    SYSTEM_PREFIXES,
    ServeRequest,
    make_plan,
    observe_pod,
    read_marker,
    resolve_role,
)
from llmprep.serve.supervise import TEARDOWN_GRACE_S, exec_plan, supervise, tritonserver_pids

__all__ = [
    "check_drift",
    "compose",
    "compose_worker",
    "DEFAULT_HOSTFILE",
    "DEFAULT_SSH_DIR",
    "DEFAULT_SSH_PORT",
    "DEFAULT_WAIT_WORKERS_SECS",
    "discover_group",
    "exec_plan",
    "FORWARD_NAMES",
    "FORWARD_PREFIXES",
    "forwarded_names",
    "Group",
    "group_hosts",
    "hostfile_text",
    "LLMAPI_LAUNCH",
    "LWS_GROUP_SIZE",
    "LWS_LEADER_ADDRESS",
    "LWS_WORKER_INDEX",
    "make_plan",
    "observe_pod",
    "PodFacts",
    "rank_args",
    "RANK_MODELS",
    "read_marker",
    "render_command",
    "REPOSITORY_MARKER",
    "resolve_role",
    "ROLES",
    "RUNTIMES",
    "ServeOptions",
    "ServePlan",
    "ServeRequest",
    "SshOptions",
    "supervise",
    "SYSTEM_PREFIXES",
    "TEARDOWN_GRACE_S",
    "tritonserver_pids",
    "wait_for_workers",
    "write_atomically",
]
