"""Logging setup: one format for every line, and no AWS secret in any of them."""

from __future__ import annotations

import logging
import re
import sys
from typing import TextIO

LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}


# Where a secret can appear in a log line: signed request headers (as a repr or in a canonical
# request), query-string signatures, STS answers in XML or JSON, and access key IDs.
_SECRET_PATTERNS = (
    re.compile(
        r"((?:authorization|x-amz-security-token|x-amz-signature)['\"]?\s*[:=]\s*b?['\"]?)"
        r"[^'\"\n,}]+",
        re.IGNORECASE,
    ),
    re.compile(r"(<(?:SecretAccessKey|SessionToken|AccessKeyId)>)[^<]*"),
    re.compile(
        r"(['\"]?(?:SecretAccessKey|SessionToken|AccessKeyId|aws_secret_access_key|"
        r"aws_session_token|secret_key|token)['\"]?\s*[:=]\s*b?['\"]?)[^'\"\s,}]+",
        re.IGNORECASE,
    ),
    re.compile(r"((?:Signature|Credential)=)[^\s,'\"&]+"),
    re.compile(r"(Signature:\s*)[0-9a-f]+"),
    re.compile(r"()\b(?:AKIA|ASIA)[A-Z0-9]{12,}\b"),
)


def redact_secrets(text: str) -> str:
    """``text`` with every credential, token and signature it quotes replaced by ``(redacted)``."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1(redacted)", text)
    return text


class RedactSecretsFilter(logging.Filter):
    """A handler filter that redacts AWS secrets from every record it passes.

    botocore, at DEBUG, logs signed requests (Authorization, X-Amz-Security-Token), canonical
    requests and response bodies, AssumeRole's secret key and session token included; a
    record is rewritten once its message is formatted, so no secret reaches the output.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record``'s message without secrets; always keep the record."""
        message = record.getMessage()
        redacted = redact_secrets(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        # A traceback and stack are added to the line after the filters ran: format them here.
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_secrets(record.stack_info)
        return True


def configure_logging(level_name: str, stream: TextIO | None = None) -> None:
    """Log at ``level_name`` to ``stream`` (stderr), in logfmt, with AWS secrets redacted.

    botocore never logs below INFO, even at debug: its DEBUG lines quote signed requests,
    session tokens and AssumeRole's answers. The redacting filter guards the rest.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        logging.Formatter("time=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)s")
    )
    handler.addFilter(RedactSecretsFilter())
    logging.basicConfig(level=LOG_LEVELS[level_name], handlers=[handler], force=True)
    # botocore logs credential lookups, and refresh failures with tracebacks; the exporter
    # logs each failed refresh itself, once, with its account, role and region.
    botocore_level = logging.INFO if level_name == "debug" else logging.ERROR
    logging.getLogger("botocore").setLevel(botocore_level)
    logging.getLogger("urllib3").setLevel(max(logging.INFO, LOG_LEVELS[level_name]))
