"""HTTP routes; each one thin, delegating to the service modules."""
