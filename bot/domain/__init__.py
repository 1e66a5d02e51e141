"""Business rules, free of I/O: no Wechaty, no database, no clock reads."""
