"""aib-audit: audit Azure VM Image Builder templates against Microsoft's best practices."""

__version__ = "0.1.0"
