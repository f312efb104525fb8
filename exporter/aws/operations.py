"""The AWS operations the exporter calls, by the names botocore and the request counts use."""

LIST_OPERATION = "ListHyperParameterTuningJobs"
DESCRIBE_OPERATION = "DescribeHyperParameterTuningJob"
TAGGING_OPERATION = "GetResources"
LIST_ACCOUNTS_OPERATION = "ListAccounts"
