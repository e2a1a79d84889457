"""One module per console page: read what it shows, render it, and its actions."""
