"""The work over one workspace: its paths, lock and registry, preparing data, the steps of a
forget batch, registration, rollback and the certification of registered versions.
"""
