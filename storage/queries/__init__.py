"""Named read queries, one small module per area; like repositories they take a session and never commit."""
