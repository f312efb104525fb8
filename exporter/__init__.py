"""Prometheus exporter for Amazon SageMaker hyperparameter tuning jobs."""

from importlib.metadata import PackageNotFoundError, version

# pyproject.toml is the one place the version is written; the installed package's metadata
# carries it here, to --version and to the log line at start.
try:
    __version__ = version("sagemaker-tuning-exporter")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
