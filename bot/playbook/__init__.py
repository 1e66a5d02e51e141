"""The playbook: scripts for the moments of the sales process that are not objections."""
