"""Pure domain logic: values, rules and decisions; no I/O imports."""
