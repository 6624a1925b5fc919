"""Dataset setup commands, one module per dataset: ``python -m algoperf_torch.data <name>``."""
