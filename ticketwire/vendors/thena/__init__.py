"""Thena (platform.thena.ai): platform-event intake, the `/v1` ticket client and rule actions."""
