"""The pipeline: readers and writers, the staged runner, executors, config and manifest."""
