"""A night's archive of calls, transcribed in shards on a cluster: which calls (``listing``), what each call
became (``records``: one durable record per call and model version, and the index built from them) and
one shard's work (``shard``)."""
