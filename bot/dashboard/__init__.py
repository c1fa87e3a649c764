"""Dashboards: the local workbook and the Google Sheet, one interface (see ``base``)."""
