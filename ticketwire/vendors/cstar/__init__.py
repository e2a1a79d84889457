"""cStar (cstar.help): webhook verification and parsing, API client, and the actions rules may take."""
