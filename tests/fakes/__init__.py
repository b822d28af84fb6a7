"""Stand-ins for remote services, for tests: real servers on loopback, never mocks of promptseg."""
