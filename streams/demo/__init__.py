"""The demo's serving fleet and simulated users."""
