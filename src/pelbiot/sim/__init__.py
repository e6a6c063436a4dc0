"""Simulated meters: the pure meter model, the MQTT simulator, the demo site."""
