"""The `pelbiot` command, one module per command group, and process composition."""
