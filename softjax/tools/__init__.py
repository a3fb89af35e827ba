"""Command-line tools: ``softjax render`` and ``softjax deform``."""
