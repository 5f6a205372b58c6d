"""One router per concern, wired together in app.main."""
