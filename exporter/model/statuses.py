"""The statuses and strategies of tuning jobs, and the sets of them the exporter acts on.

The enums are botocore's service model's (HyperParameterTuningJobStatus,
HyperParameterTuningJobStrategyType, TrainingJobStatusCounters, ObjectiveStatusCounters);
a status or strategy the API adds later passes through the exporter as it is.
"""

# Every status ListHyperParameterTuningJobs may report, as the API documents them.
TUNING_JOB_STATUSES = (
    "Completed",
    "InProgress",
    "Failed",
    "Stopped",
    "Stopping",
    "Deleting",
    "DeleteFailed",
)
TUNING_JOB_STRATEGIES = ("Bayesian", "Random", "Hyperband", "Grid")

# Counter keys in the order the API documents them; the collectors publish them in this order.
TRAINING_JOB_STATUSES = (
    "Completed",
    "InProgress",
    "RetryableError",
    "NonRetryableError",
    "Stopped",
)
OBJECTIVE_STATUSES = ("Succeeded", "Pending", "Failed")

# Jobs still training: they keep per-job series whatever their age, and their description
# can still change.
RUNNING_STATUSES = frozenset({"InProgress", "Stopping"})
# Jobs whose listing can still change: the running ones, and those being deleted.
ACTIVE_STATUSES = RUNNING_STATUSES | {"Deleting"}
# A job being deleted is going away; describing it would only spend budget on a failure.
UNDESCRIBED_STATUSES = frozenset({"Deleting"})
