"""git and DVC: the workspace repository and its data lineage."""
