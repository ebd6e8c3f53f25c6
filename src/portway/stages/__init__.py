"""Pipeline stages: one small module per feature, its settings beside its code."""
