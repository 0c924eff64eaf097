"""The Textual fleet monitor."""
