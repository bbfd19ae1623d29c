"""Data: image dataset reader and registry, embedded and synthetic data, protocols,
pseudo anomalies, tensor caches and the tabular (ADBench) path."""
