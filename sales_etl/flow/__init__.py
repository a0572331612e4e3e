"""One file's orchestration (pipeline), the retry sweep and its pure policy, requeue, the
manual trigger, and the telemetry of a run. Holds no SQL and no storage SDK: it calls the
storage and db edges. May import every layer below it (core to db)."""
