"""The live feed: the hub that fans committed readings out to WebSocket clients."""
