"""HTTP handlers: parse and validate, call the data layer, answer JSON."""
