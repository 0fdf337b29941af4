"""Listeners, one module per Slack surface, each with `register(app, ctx)`.

A listener acknowledges first, then calls one use case with `now=ctx.clock()` and shows its
Outcome; the rules live in commands/, the pictures in bot/blocks/.
"""
