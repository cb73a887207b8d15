"""What may be served: versions and aliases, gate results and the metric comparison, the
promotion policy, and the provenance a version carries.
"""
