"""KEDA's rules for a ScaledObject with Prometheus triggers, as read in KEDA's source and docs.

Each row: the rule in our words, where it was read (file, commit of the stored copy in the
find_files/read_file index, or the docs page), and a worked case tests/lab/test_keda.py runs
against llmprep/lab/keda.py. `steps` are polls: (time s, current replicas, query value or None,
replicas KEDA sets). Copies read:
- EXEC: kedacore/keda pkg/scaling/executor/scale_scaledobjects.go @ 7f17c10c98ce89a6751f60a9169fb7d9b720a114
  (RequestScale, scaleToZero, scaleFromZero; an older 2.x copy: no initialCooldownPeriod, no idleReplicaCount).
- PROM: kedacore/keda pkg/scalers/prometheus_scaler.go @ bc312d7dc1222c34ca0e6e58cdc21bf8d81b19ac, an early 2.x
  copy: IsActive L102-110 (active when the query value is > 0: the later `activationThreshold`, default 0, in
  the docs below, moves that 0); ExecutePromQuery L160-162 (an empty result reads 0, not an error: the docs'
  `ignoreNullValues`, default true); GetMetricSpecForScaling L116-131 (External metric, AverageValue target =
  threshold; `metricType: Value` is in the docs).
- LOOP: kedacore/keda pkg/scaling/scale_handler.go @ 258b79f9de7e550bc766b0bb1903c0d67971e655: startScaleLoop
  L137-158 (checkScalers, then a timer of pollingInterval, forever); startPushScalers (a push scaler's activity
  goes to RequestScale as it arrives, not on the polling timer); checkScalers (IsScaledObjectActive, RequestScale).
- ADDON: kedacore/http-add-on scaler/handlers.go @ 66636a6ab9198322346fdc92de2dec42d16fb258: IsActive L75 (active
  when the interceptor's pending count for the host is > 0), StreamIsActive L88 (pushes that state every 5 ms);
  interceptor/config/timeouts.go @ 03590cb3ab7a681ac4b91817a3296968c8419f2c L19-21 (the interceptor holds a
  request up to KEDA_CONDITION_WAIT_TIMEOUT, default 1500ms, for the Deployment to have a replica).
- HPA: kedacore/keda controllers/keda/hpa.go @ 37c00bcf7f8dbaa3678e4d9ceb67ff8717cd0515 (getHPAMinReplicas).
- DOCS: keda.sh "ScaledObject specification" (defaults: pollingInterval 30, cooldownPeriod 300,
  minReplicaCount 0, maxReplicaCount 100); keda.sh/docs/latest/scalers/prometheus (activationThreshold,
  default 0: a trigger is active above it; ignoreNullValues default true: an empty result is 0).
`PUSH_RULES` steps are (time s, current replicas, kind, value, replicas KEDA sets): kind "poll" with a
query value (None: no series) or "push" with the push scaler's activity.
"""

from __future__ import annotations

from typing import Any

EXEC = "kedacore/keda pkg/scaling/executor/scale_scaledobjects.go @7f17c10c"
PROM = "kedacore/keda pkg/scalers/prometheus_scaler.go @bc312d7d"
LOOP = "kedacore/keda pkg/scaling/scale_handler.go @258b79f9"
ADDON = "kedacore/http-add-on scaler/handlers.go @66636a6a"
HPA = "kedacore/keda controllers/keda/hpa.go @37c00bcf"
DOCS = "keda.sh docs, ScaledObject specification"

OPERATOR_RULES: list[dict[str, Any]] = [
    dict(
        rule="a trigger is active only when its value is above activationThreshold",
        source=f"{PROM} IsActive L102-110; {DOCS} (activationThreshold)",
        minimum=0,
        cooldown=300,
        activation=5,
        steps=[(0, 0, 5.0, 0), (30, 0, 5.1, 1)],
    ),
    dict(
        rule="at 0 replicas an active trigger scales to max(minReplicaCount, 1)",
        source=f"{EXEC} RequestScale / scaleFromZero",
        minimum=0,
        cooldown=300,
        activation=0,
        steps=[(0, 0, 0.5, 1)],
    ),
    dict(
        rule="with minReplicaCount above 1, activation from 0 goes straight to the minimum",
        source=f"{EXEC} scaleFromZero",
        minimum=3,
        cooldown=300,
        activation=0,
        steps=[(0, 0, 2.0, 3)],
    ),
    dict(
        rule="inactive with replicas and minReplicaCount 0: to 0 only once lastActiveTime + cooldownPeriod is past",
        source=f"{EXEC} scaleToZero",
        minimum=0,
        cooldown=300,
        activation=0,
        steps=[(0, 0, 1.0, 1), (30, 1, 0.0, 1), (300, 1, 0.0, 1), (330, 1, 0.0, 0)],
    ),
    dict(
        rule="an active poll with replicas refreshes lastActiveTime, restarting the cooldown",
        source=f"{EXEC} RequestScale (case isActive: updateLastActiveTime)",
        minimum=0,
        cooldown=300,
        activation=0,
        steps=[(0, 0, 1.0, 1), (200, 1, 1.0, 1), (450, 1, 0.0, 1), (510, 1, 0.0, 0)],
    ),
    dict(
        rule="never active since the operator started (no lastActiveTime): to 0 at once",
        source=f"{EXEC} scaleToZero (LastActiveTime nil)",
        minimum=0,
        cooldown=300,
        activation=0,
        steps=[(0, 2, 0.0, 0)],
    ),
    dict(
        rule="a failed query counts as not active",
        source=f"{PROM} IsActive (error → false)",
        minimum=0,
        cooldown=300,
        activation=0,
        steps=[(0, 0, None, 0)],
    ),
    dict(
        rule="inactive below a non-zero minReplicaCount: set to the minimum; KEDA never scales it to 0",
        source=f"{EXEC} RequestScale (currentReplicas < MinReplicaCount)",
        minimum=2,
        cooldown=300,
        activation=0,
        steps=[(0, 1, 0.0, 2), (400, 2, 0.0, 2)],
    ),
]

PUSH_RULES: list[dict[str, Any]] = [
    dict(
        rule="at 0 replicas the triggers' series are gone: the empty result reads 0 and nothing activates",
        source=f"{PROM} ExecutePromQuery L160-162; {DOCS} (ignoreNullValues)",
        minimum=0,
        cooldown=60,
        steps=[(0, 0, "poll", None, 0), (30, 0, "poll", 0.0, 0), (60, 0, "poll", None, 0)],
    ),
    dict(
        rule="a push scaler's activity at 0 replicas scales from zero at once, between polls",
        source=f"{LOOP} startPushScalers; {ADDON} IsActive L75 (pending > 0)",
        minimum=0,
        cooldown=60,
        steps=[(0, 0, "poll", None, 0), (0.2, 0, "push", True, 1)],
    ),
    dict(
        rule="pushed activity refreshes lastActiveTime: the cooldown counts from the last held request",
        source=f"{LOOP} startPushScalers; {EXEC} RequestScale (isActive: updateLastActiveTime)",
        minimum=0,
        cooldown=60,
        steps=[(0, 0, "push", True, 1), (50, 1, "push", True, 1), (100, 1, "poll", 0.0, 1), (111, 1, "poll", 0.0, 0)],
    ),
]

SPEC_RULES: list[dict[str, Any]] = [
    dict(
        rule="defaults for omitted fields",
        source=DOCS,
        field="defaults",
        expected=dict(polling_interval_s=30.0, cooldown_period_s=300.0, min_replica_count=0, activation=0.0),
    ),
    dict(
        rule="the generated HPA's minReplicas is max(minReplicaCount, 1)",
        source=f"{HPA} getHPAMinReplicas",
        field="hpa_min",
        expected=1,
    ),
    dict(
        rule="the generated HPA reads one External metric per trigger, AverageValue, target = threshold",
        source=f"{PROM} GetMetricSpecForScaling",
        field="hpa_metric",
        expected=("External", "AverageValue", 4.0),
    ),
]
