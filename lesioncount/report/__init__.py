"""Presentation only: overlays, HTML pages, tables. No maths lives here."""
