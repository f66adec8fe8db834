"""Every table, imported in one place so Alembic and the tests see the whole schema."""

from newsletter.admin.accounts import AdminSession, LoginFailure, Operator
from newsletter.admin.audit import AuditEntry
from newsletter.admin.status import WriteProbe
from newsletter.cards.card import Card
from newsletter.cards.translation_table import CardTranslation
from newsletter.delivery import Delivery, DigestEdition, SentPaper
from newsletter.delivery.schedule import SendTick
from newsletter.ingest.feed import Feed
from newsletter.ingest.paper import Paper
from newsletter.ingest.same_work import PaperAlias
from newsletter.installation import InstallationSecret
from newsletter.readers.tables import Consent, Preferences, Subscriber, Suppression, WebhookEvent
from newsletter.relevance.library.tables import LibraryEntry, LibraryUpload
from newsletter.relevance.tables import PaperVector, Rating, ReaderModelRow
from newsletter.subscriptions.mail_queue import WaitingMail
from newsletter.subscriptions.signup_limits import MailLimitHit, SignupWindow

__all__ = [
    "AdminSession", "AuditEntry", "Card", "CardTranslation", "Consent", "Delivery",
    "DigestEdition", "Feed", "InstallationSecret", "LibraryEntry", "LibraryUpload",
    "LoginFailure", "MailLimitHit", "Operator", "Paper", "PaperAlias", "PaperVector",
    "Preferences", "Rating", "ReaderModelRow", "SendTick", "SentPaper", "SignupWindow",
    "Subscriber", "Suppression", "WaitingMail", "WebhookEvent", "WriteProbe",
]
