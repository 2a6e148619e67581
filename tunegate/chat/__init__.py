"""Chat templates and tool calls, shared by training and serving (imports nothing of ours
but itself)."""
