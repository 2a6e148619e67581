"""The command-line client: ``tunegate train``, ``tunegate jobs …`` and ``tunegate chat``, talking
to a tunegate server (or any OpenAI-compatible one) through the official ``openai`` SDK.

It never imports the server's code: what it knows of a server is what the API answers.
"""
