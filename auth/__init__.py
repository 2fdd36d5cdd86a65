"""Who is calling the HTTP APIs: bearer tokens (JWT) verified against a JWKS URL or a local key,
their scopes, and the owner id a customer's token carries."""
