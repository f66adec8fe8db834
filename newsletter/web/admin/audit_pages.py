"""The audit log page: newest first, a page at a time, narrowed to an actor or an action."""

from __future__ import annotations

from flask import render_template, request

from newsletter.admin import audit
from newsletter.web.admin import frame

PAGE_SIZE = 50


@frame.blueprint.get("/audit", endpoint="audit")
def audit_log() -> str:
    actor = request.args.get("actor", "").strip().lower()[:254]
    action = request.args.get("action", "").strip()[:64]
    shown = audit.page(frame.db(), request.args.get("page", 1, type=int) or 1, PAGE_SIZE,
                       actor=actor, action=action)
    return render_template("admin/audit.html", page=shown, actor=actor, action=action,
                           actions=audit.actions(frame.db()))
