"""The operator's desk: who may run Paperwire from the browser, and what they did.

An operator account is created on the command line (`newsletter admin add EMAIL`): there is
no default password, and until one account exists there is no admin site at all. An
operator signs in at /admin/login and gets a server-side session (newsletter/admin/accounts.py)
that ends on sign-out, after 30 idle minutes, or 12 hours after sign-in, whichever is first.
Sign-in failures are counted per account and per network, so guessing a password is slow.

Every action an operator takes, from the browser or the CLI, is written to the audit log
(newsletter/admin/audit.py): who, what, on what, when. The site shows it at /admin/audit.

What the service is doing (`status`: `newsletter status` and the site's /healthz), its
counts and charts (`stats`, `charts`), and what an operator may look up or do (`lookups`,
`actions`) are here too.

The web frame around these lives in newsletter/web/admin/; this package holds the domain.
"""
