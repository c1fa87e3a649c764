"""The investor email templates (*.j2), shipped inside the wheel as the package ``bot.templates``.

This folder is mapped to ``bot.templates`` in pyproject.toml ([tool.setuptools.package-dir]);
``bot.mail.render`` loads the templates through that package, so they are found the same way in
an editable install, an installed wheel and from any working directory.
"""
