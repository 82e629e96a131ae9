"""aib-audit: audit Azure VM Image Builder templates against Microsoft's best practices."""

__version__ = "0.1.0"

# Public-cloud ARM. Here, not in azure.py, so the CLI can name it without importing every SDK.
DEFAULT_ARM_ENDPOINT = "https://management.azure.com"
