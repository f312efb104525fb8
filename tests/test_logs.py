"""The logging setup: logfmt lines, and no AWS credential in any of them, at any level."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Iterator

from exporter.app import Exporter
from exporter.aws.operations import LIST_OPERATION
from exporter.config.settings import AccountSettings, ExporterConfig
from exporter.logs import configure_logging
from tests.conftest import TEST_ENVIRONMENT
from tests.sagemaker_server import FaultRule, SageMakerTestServer

REGION = "eu-west-1"
READER_ROLE = "arn:aws:iam::111111111111:role/reader"


@contextlib.contextmanager
def _restored_logging() -> Iterator[None]:
    """Put back the root handlers and the levels that :func:`configure_logging` changes."""
    root = logging.getLogger()
    names = ("botocore", "urllib3")
    saved = (root.level, list(root.handlers), [logging.getLogger(n).level for n in names])
    try:
        yield
    finally:
        root.handlers[:] = saved[1]
        root.setLevel(saved[0])
        for name, level in zip(names, saved[2], strict=True):
            logging.getLogger(name).setLevel(level)


def test_debug_logging_never_writes_a_credential(
    sagemaker: SageMakerTestServer, make_config: Callable[..., ExporterConfig]
) -> None:
    sagemaker.add_job(REGION, "theirs", account="111111111111")
    sagemaker.add_fault(
        FaultRule(region=REGION, kind="throttle", times=1, operation=LIST_OPERATION)
    )
    config = make_config(regions=(REGION,), accounts=(AccountSettings(READER_ROLE),))
    stream = io.StringIO()
    with _restored_logging():
        configure_logging("debug", stream)
        exporter = Exporter(config)
        exporter.cache.refresh_all(timeout=30)
    written = stream.getvalue()

    assert exporter.cache.snapshots()[0].up is True
    assert "level=DEBUG" in written  # debug logging was on
    secrets = sagemaker.secrets_seen()
    assert len(secrets) >= 3  # the issued secret key and token, and request signatures
    assert [secret for secret in secrets if secret in written] == []
    assert TEST_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"] not in written
    assert "Authorization" not in written


def test_log_lines_that_quote_a_signed_request_or_issued_credentials_are_redacted() -> None:
    stream = io.StringIO()
    with _restored_logging():
        configure_logging("debug", stream)
        # What botocore writes at DEBUG, should a library below it log the same at WARNING.
        logging.getLogger("botocore.endpoint").warning(
            "Sending http request: <AWSPreparedRequest headers={'X-Amz-Security-Token': "
            "b'IQoJb3JpZ2luX2VjEXAMPLETOKEN', 'Authorization': b'AWS4-HMAC-SHA256 "
            "Credential=ASIAEXAMPLEKEYID12345/20261127/eu-west-1/sagemaker/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=0123456789abcdef0123456789abcdef'}>"
        )
        logging.getLogger("botocore.parsers").warning(
            "Response body: <AccessKeyId>ASIAEXAMPLEKEYID12345</AccessKeyId>"
            "<SecretAccessKey>wJalrXUtnFEMIEXAMPLESECRET</SecretAccessKey>"
            "<SessionToken>FwoGZXIvYXdzEXAMPLETOKEN</SessionToken>"
        )
        logging.getLogger("botocore.auth").warning(
            "CanonicalRequest:\nPOST\n/\n\nhost:api.sagemaker\n"
            "x-amz-security-token:IQoJb3JpZ2luX2VjEXAMPLETOKEN\n"
        )
    written = stream.getvalue()

    for secret in (
        "IQoJb3JpZ2luX2VjEXAMPLETOKEN",
        "ASIAEXAMPLEKEYID12345",
        "0123456789abcdef0123456789abcdef",
        "wJalrXUtnFEMIEXAMPLESECRET",
        "FwoGZXIvYXdzEXAMPLETOKEN",
    ):
        assert secret not in written
    assert written.count("(redacted)") >= 6
    assert "Sending http request" in written  # the rest of each line is kept


def test_a_logged_traceback_that_quotes_a_secret_is_redacted() -> None:
    stream = io.StringIO()
    with _restored_logging():
        configure_logging("info", stream)
        try:
            raise RuntimeError(
                "Response body: <SecretAccessKey>wJalrXUtnFEMIEXAMPLESECRET</SecretAccessKey>"
            )
        except RuntimeError:
            logging.getLogger("exporter").exception("refresh failed")
    written = stream.getvalue()

    assert "wJalrXUtnFEMIEXAMPLESECRET" not in written
    assert "Traceback (most recent call last)" in written  # the traceback itself is kept
    assert "RuntimeError: Response body: <SecretAccessKey>(redacted)" in written
