"""The HTTP side: the app factory, middleware, validators, keys, rate limits, error mapping
and the service the handlers call."""
