"""Security: users, sessions, API keys, passwords, permissions, audit, throttles, region scope
and HTTP hardening."""
