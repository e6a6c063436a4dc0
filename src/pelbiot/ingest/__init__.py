"""Ingest: the MQTT consumer and its bulk client, the batching writer, the recorder, rejects,
counters and the embedded broker."""
