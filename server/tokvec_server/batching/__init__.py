"""Dynamic batching across every request and stream: a queue packed by a padded-piece budget,
and the worker threads that feed the model and collect finished docs."""
