"""The checks: one module per best practice, metadata in checks/metadata/*.toml."""
