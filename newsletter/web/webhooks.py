"""Provider callbacks. SendGrid signs each request; nothing here trusts a cookie or a form."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from newsletter.engagement.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER
from newsletter.subscriptions import signup as flows
from newsletter.web.common import services

blueprint = Blueprint("webhooks", __name__)

BATCH_LIMIT = 8 * 1024 * 1024


@blueprint.post("/webhooks/sendgrid")
def sendgrid():  # type: ignore[no-untyped-def]
    # SendGrid batches many events per request; set before the body is first read.
    request.max_content_length = BATCH_LIMIT
    try:
        report = flows.receive_events(services(), request.headers.get(SIGNATURE_HEADER),
                                      request.headers.get(TIMESTAMP_HEADER),
                                      request.get_data(cache=False))
    except flows.WebhookRejected as exc:
        return jsonify(error=str(exc)), exc.status
    return jsonify(received=report.received, duplicates=report.duplicates,
                   suppressed=report.suppressed)
