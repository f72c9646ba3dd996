"""The protobuf edge: messages in, plain types to the engine, results back out as messages."""
