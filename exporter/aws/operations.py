"""The AWS operations the exporter calls, by the names botocore and the request counts use."""

LIST_OPERATION = "ListHyperParameterTuningJobs"
DESCRIBE_OPERATION = "DescribeHyperParameterTuningJob"
TRAINING_JOBS_OPERATION = "ListTrainingJobsForHyperParameterTuningJob"
TAGGING_OPERATION = "GetResources"
LIST_ACCOUNTS_OPERATION = "ListAccounts"
ASSUME_ROLE_OPERATION = "AssumeRole"
