"""Named read queries, one small module per area; like repositories they take a session and never commit."""

# the outgoing-log key of a message's attachment, sent after its text: "<message key>:attachment"
# (bot/services/outbox.py). Counts of messages leave it out: text and attachment are one message.
ATTACHMENT_KEY_SUFFIX = ":attachment"
