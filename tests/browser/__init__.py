"""The web console driven in a real browser (Debian's Chromium through Playwright)."""
