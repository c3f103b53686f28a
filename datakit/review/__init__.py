"""The annotators' review of a dataset version: the log and its commit (``core``), the local
web app (``app``), started by ``datakit review NAME``."""
