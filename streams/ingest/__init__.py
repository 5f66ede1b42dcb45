"""Events in from elsewhere: the ingestion bridge (KServe, Seldon, any JSON log), labels from files,
and recorded events as JSON Lines (record and replay)."""
