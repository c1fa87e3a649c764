"""The work each command does, one module per thing, each importing only those below it:

- :mod:`~bot.jobs.context`: the collaborators every job receives;
- :mod:`~bot.jobs.sync`: which days to fetch from Stripe, and fetching them;
- :mod:`~bot.jobs.projection`: ledger -> dashboard rows;
- :mod:`~bot.jobs.investor_email`: the month's email, built from the ledger, sent once;
- :mod:`~bot.jobs.monthly`: report runs, reconciliation, the Monthly tab, then the email;
- :mod:`~bot.jobs.daily`: a day's sync, then a due month (``daily`` may start ``monthly``,
  never the other way round);
- :mod:`~bot.jobs.backfill` and :mod:`~bot.jobs.ingest`: a range of days, fast.

See ``docs/design.md`` for the whole data flow.
"""
