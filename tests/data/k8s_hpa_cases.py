"""Cases of Kubernetes' own HPA controller tests, restated as data for llmprep/lab/hpa.py.

Read (find_string / read_file, kubernetes/kubernetes, pkg/controller/podautoscaler/):
- RC: replica_calculator_test.go, the stored copy with per-direction `Tolerances`
  (Kubernetes 1.33+; store file id 51982554829, offsets 44000-64000), plus
  TestPlainMetricReplicaCalcMissingMetricsNoChangeEq from the same copy (offset ~63500).
- HT: horizontal_test.go at commit 003e86297d18a8538c9da3619871393f9703bf70 (offsets 170000-186000):
  TestConvertDesiredReplicasWithBehaviorRate's table and TestNormalizeDesiredReplicasWithBehavior;
  TestScaleDownStabilizeInitialSize at commit 4e62298c1bd12c8b9b9c7337aa7fd07a8b9c37a8 (store id 82418915).
- The controller code the cases exercise: replica_calculator.go calcPlainMetricReplicas (missing pods
  filled only when usageRatio < 1 or > 1, kubernetes#117845; store id 195579030) and horizontal.go
  reconcileAutoscaler → recordInitialRecommendation.

Units: Kubernetes' tests give metric levels and targets in milli-units; so do these rows
(`*_milli`); the test converts to units. Tolerances are (scale_down, scale_up) as in Kubernetes'
`Tolerances{scaleDown, scaleUp}`; None means the default 0.1 both ways. In the replica-calculator
harness every pod is Running; `unready` lists pods whose Ready condition is false (it matters only to
Object/External counts of ready pods; non-CPU Pods metrics ignore readiness); pods beyond the
listed levels have no metric (missing).
"""

from __future__ import annotations

from typing import Any

RC = "replica_calculator_test.go"
HT = "horizontal_test.go"

# kind: pods (Pods metric, AverageValue), object (Object, Value), object_per_pod (Object, AverageValue),
#       external (External, Value), external_per_pod (External, AverageValue).
REPLICA_CASES: list[dict[str, Any]] = [
    dict(
        src=RC,
        test="TestReplicaCalcScaleUpCM",
        kind="pods",
        current=3,
        levels=[20000, 10000, 30000],
        target_milli=15000,
        expected=4,
    ),
    dict(
        src=RC,
        test="TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale",
        kind="pods",
        current=3,
        levels=[50000, 10000, 30000],
        unready=[2],
        target_milli=15000,
        expected=6,
    ),
    dict(
        src=RC,
        test="TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown",
        kind="pods",
        current=3,
        levels=[50000, 15000, 30000],
        unready=[0, 2],
        target_milli=15000,
        expected=7,
    ),
    dict(
        src=RC,
        test="TestReplicaCalcScaleDownCM",
        kind="pods",
        current=5,
        levels=[12000] * 5,
        target_milli=20000,
        expected=3,
    ),
    dict(
        src=RC,
        test="TestReplicaCalcToleranceCM",
        kind="pods",
        current=3,
        levels=[20000, 21000, 21000],
        target_milli=20000,
        expected=3,
    ),
    dict(
        src=RC,
        test="TestReplicaCalcConfigurableToleranceCM",
        kind="pods",
        current=3,
        levels=[20000, 21000, 21000],
        target_milli=20000,
        tolerances=(0.1, 0.01),
        expected=4,
    ),
    # kubernetes#117845: ready pods exactly at target, two pods without metrics: no change.
    dict(
        src=RC,
        test="TestPlainMetricReplicaCalcMissingMetricsNoChangeEq",
        kind="pods",
        current=5,
        levels=[20000, 19000, 21000],
        target_milli=20000,
        expected=5,
    ),
    dict(
        src=RC,
        test="TestReplicaCalcScaleUpCMObject",
        kind="object",
        current=3,
        levels=[20000],
        target_milli=15000,
        expected=4,
    ),
    dict(
        src=RC,
        test="TestReplicaCalcScaleUpCMObjectIgnoresUnreadyPods",
        kind="object",
        current=3,
        levels=[50000],
        unready=[0, 2],
        target_milli=10000,
        expected=5,
    ),
    dict(
        src=RC,
        test="TestReplicaCalcScaleDownCMObject",
        kind="object",
        current=5,
        levels=[12000],
        target_milli=20000,
        expected=3,
    ),
    dict(
        src=RC,
        test="TestReplicaCalcToleranceCMObject",
        kind="object",
        current=3,
        levels=[20666],
        target_milli=20000,
        expected=3,
    ),
    dict(
        src=RC,
        test="TestReplicaCalcConfigurableToleranceCMObject",
        kind="object",
        current=3,
        levels=[20666],
        target_milli=20000,
        tolerances=(0.1, 0.01),
        expected=4,
    ),
    dict(
        src=RC,
        test="TestReplicaCalcScaleUpCMPerPodObject",
        kind="object_per_pod",
        current=3,
        levels=[20000],
        target_milli=5000,
        expected=4,
    ),
    dict(
        src=RC,
        test="TestReplicaCalcScaleDownPerPodCMObject",
        kind="object_per_pod",
        current=5,
        levels=[6000],
        target_milli=2000,
        expected=3,
    ),
    dict(
        src=RC,
        test="TestReplicaCalcTolerancePerPodCMObject",
        kind="object_per_pod",
        current=4,
        levels=[20166],
        target_milli=5000,
        expected=4,
    ),
    dict(
        src=RC,
        test="TestReplicaCalcScaleUpCMExternalIgnoresUnreadyPods",
        kind="external",
        current=3,
        levels=[8600],
        unready=[0, 2],
        target_milli=4400,
        expected=2,
    ),
    dict(
        src=RC,
        test="TestReplicaCalcScaleDownCMExternal",
        kind="external",
        current=5,
        levels=[8600],
        target_milli=14334,
        expected=3,
    ),
    dict(
        src=RC,
        test="TestReplicaCalcToleranceCMExternal",
        kind="external",
        current=3,
        levels=[8600],
        target_milli=8888,
        expected=3,
    ),
    dict(
        src=RC,
        test="TestReplicaCalcScaleUpPerPodCMExternal",
        kind="external_per_pod",
        current=3,
        levels=[8600],
        target_milli=2150,
        expected=4,
    ),
    dict(
        src=RC,
        test="TestReplicaCalcScaleDownPerPodCMExternal",
        kind="external_per_pod",
        current=5,
        levels=[8600],
        target_milli=2867,
        expected=3,
    ),
    dict(
        src=RC,
        test="TestReplicaCalcTolerancePerPodCMExternal",
        kind="external_per_pod",
        current=3,
        levels=[8600],
        target_milli=2900,
        expected=3,
    ),
]

# TestConvertDesiredReplicasWithBehaviorRate rows. Rules follow the test helper
# generateScalingRules(pods, podsPeriod, percent, percentPeriod, stabilizationWindow): a policy is
# present only when its value is non-zero; selectPolicy Max. Past events are spread as the test's
# generateEventsUniformDistribution(changes, 120) spreads them: event i of n sits
# 120 - (i + 1) * 120/n + 60/n seconds in the past.
RATE_CASES: list[dict[str, Any]] = [
    dict(
        src=HT,
        test="TestConvertDesiredReplicasWithBehaviorRate",
        name="scaleDown with percent policy and previous scale up and down events",
        up_events=[2],
        down_events=[4],
        minimum=1,
        maximum=1000,
        down_rules=(0, 0, 50, 180, 0),
        current=10,
        desired=1,
        expected=6,
        reason="ScaleDownLimit",
    ),
    dict(
        src=HT,
        test="TestConvertDesiredReplicasWithBehaviorRate",
        name="scaleDown with previous events preventing further scale down",
        down_events=[10, 10, 10],
        minimum=1,
        maximum=1000,
        down_rules=(0, 0, 10, 120, 300),
        current=100,
        desired=0,
        expected=100,
        reason="ScaleDownLimit",
    ),
    dict(
        src=HT,
        test="TestConvertDesiredReplicasWithBehaviorRate",
        name="scaleDown with with previous events still allowing more scale down",
        down_events=[10, 10, 10],
        minimum=1,
        maximum=1000,
        down_rules=(0, 0, 1000, 120, 300),
        current=10,
        desired=5,
        expected=5,
        reason="DesiredWithinRange",
    ),
    dict(
        src=HT,
        test="TestConvertDesiredReplicasWithBehaviorRate",
        name="check 'outdated' flag for events for one behavior for up",
        up_events=[8, 12, 9, 11],
        minimum=1,
        maximum=1000,
        up_rules=(1000, 60, 0, 0, 0),
        current=100,
        desired=200,
        expected=200,
        reason="DesiredWithinRange",
    ),
    dict(
        src=HT,
        test="TestConvertDesiredReplicasWithBehaviorRate",
        name="check that events were not marked 'outdated' for two different policies in the behavior for up",
        up_events=[8, 12, 9, 11],
        minimum=1,
        maximum=1000,
        up_rules=(1000, 120, 100, 60, 0),
        current=100,
        desired=200,
        expected=200,
        reason="DesiredWithinRange",
    ),
    dict(
        src=HT,
        test="TestConvertDesiredReplicasWithBehaviorRate",
        name="check that events were marked 'outdated' for two different policies in the behavior for up",
        up_events=[8, 12, 9, 11],
        minimum=1,
        maximum=1000,
        up_rules=(1000, 30, 100, 60, 0),
        current=100,
        desired=200,
        expected=200,
        reason="DesiredWithinRange",
    ),
    dict(
        src=HT,
        test="TestConvertDesiredReplicasWithBehaviorRate",
        name="check 'outdated' flag for events for one behavior for down",
        down_events=[8, 12, 9, 11],
        minimum=1,
        maximum=1000,
        down_rules=(1000, 60, 0, 0, 300),
        current=100,
        desired=5,
        expected=5,
        reason="DesiredWithinRange",
    ),
    dict(
        src=HT,
        test="TestConvertDesiredReplicasWithBehaviorRate",
        name="check that events were not marked 'outdated' for two different policies in the behavior for down",
        down_events=[8, 12, 9, 11],
        minimum=1,
        maximum=1000,
        down_rules=(1000, 120, 100, 60, 300),
        current=100,
        desired=5,
        expected=5,
        reason="DesiredWithinRange",
    ),
]

# TestNormalizeDesiredReplicasWithBehavior rows: earlier recommendations (replicas, seconds ago),
# windows in seconds, and the stabilized count.
STABILIZATION_CASES: list[dict[str, Any]] = [
    dict(
        src=HT,
        test="TestNormalizeDesiredReplicasWithBehavior",
        name="empty recommendations for scaling down",
        recommendations=[],
        current=100,
        desired=5,
        up_window=0,
        down_window=0,
        expected=5,
    ),
    dict(
        src=HT,
        test="TestNormalizeDesiredReplicasWithBehavior",
        name="simple scale down stabilization",
        recommendations=[(4, 120), (5, 60)],
        current=100,
        desired=3,
        up_window=0,
        down_window=180,
        expected=5,
    ),
    dict(
        src=HT,
        test="TestNormalizeDesiredReplicasWithBehavior",
        name="simple scale up stabilization",
        recommendations=[(4, 120), (5, 60)],
        current=1,
        desired=7,
        up_window=300,
        down_window=0,
        expected=4,
    ),
    dict(
        src=HT,
        test="TestNormalizeDesiredReplicasWithBehavior",
        name="no scale down stabilization",
        recommendations=[(1, 120), (2, 60)],
        current=100,
        desired=3,
        up_window=300,
        down_window=0,
        expected=3,
    ),
    dict(
        src=HT,
        test="TestNormalizeDesiredReplicasWithBehavior",
        name="no scale up stabilization",
        recommendations=[(4, 120), (5, 60)],
        current=1,
        desired=3,
        up_window=0,
        down_window=300,
        expected=3,
    ),
]

# Whole-controller cases (reconcileAutoscaler). TestScaleDownStabilizeInitialSize uses CPU at 28 %
# of request against a 50 % target (a ratio of 0.56 on 5 pods, recommendation 3); restated here with a
# Pods metric at the same ratio. A new HPA without stored recommendations keeps its 5 replicas.
CONTROLLER_CASES: list[dict[str, Any]] = [
    dict(
        src=HT,
        test="TestScaleDownStabilizeInitialSize",
        minimum=2,
        maximum=6,
        current=5,
        levels=[280] * 5,
        target_milli=500,
        behavior=False,
        expected=5,
    ),
    dict(
        src=HT,
        test="TestScaleDown",
        minimum=2,
        maximum=6,
        current=5,
        levels=[280] * 5,
        target_milli=500,
        behavior=False,
        seed_empty=True,
        expected=3,
    ),
]
