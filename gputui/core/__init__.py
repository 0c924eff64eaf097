"""Pure domain code: the data model, health verdicts, the XID catalogue and the risk model."""
