"""Action space and executors: what the agent can do, and the code that does it."""
