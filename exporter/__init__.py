"""Prometheus exporter for Amazon SageMaker hyperparameter tuning jobs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sagemaker-tuning-exporter")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
