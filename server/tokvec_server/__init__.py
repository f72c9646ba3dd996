"""The tokvec server: rpc/ -> validation -> alignment/ -> batching/ -> runners/ -> pooling -> rpc/."""

__version__ = "0.1.0"
