"""The mail step: a digest becomes a mail batch, and the batch is sent.

- `message`: a reader's digest as template data, and the batch of an edition's readers
  (pure), with the List-Unsubscribe headers every mail carries;
- `render`: the MJML and Handlebars templates in `email_templates/`, one digest template per
  interface language made from one source, rendered here for the senders that do not
  render them themselves;
- `batch`: what a batch holds and what its sending reports, and the `RequestLog` each
  request is told to (the send journal);
- `senders`: the message, its MIME form, and the file, console and SMTP senders;
  `sendgrid`: SendGrid's (`sendgrid_templates`: the digest's templates kept on SendGrid,
  one per language;
  `sendgrid_requests`: one request with its documented retries);
- `registry`: which of them MAIL_BACKEND names, above them all.

Nothing here reads the database: the delivery step hands batches in and records results.
"""
