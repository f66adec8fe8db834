"""The readers: who subscribed, what they asked for, and the signed links that name them.

- `reader_input`: what a form or a command may say (address, topics, keywords, authors, a
  description, liked papers), checked by pure functions before anything is written;
- `tables`: subscribers, their preferences and consents, suppressed addresses;
- `subscriber`: the changes a reader's row goes through (subscribe, confirm, update,
  unsubscribe, suppress, delete), inside the caller's transaction;
- `links`: signed links, how a reader proves without an account that a mail reached them.

Every later step reads a reader from here; what a reader does on the site (sign up, rate,
export) is the `subscriptions` step, which sits above the digest and the mail.
"""
