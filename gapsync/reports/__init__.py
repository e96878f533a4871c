"""What renders findings and decisions for people and tools: the HTML report and the CycloneDX SBOM.
They scan nothing.
"""
