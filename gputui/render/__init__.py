"""Headless output for the CLI: rich tables, JSON and Markdown."""
