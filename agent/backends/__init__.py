"""Model backends: one :class:`~agent.backends.base.Backend` interface, one class per way of running Qwen3-VL."""
