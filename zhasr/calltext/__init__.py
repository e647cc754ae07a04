"""What a call's text carries beyond its words: personal data to redact (``pii``) and numbers to write
as digits (``itn``). Text in, spans or text out; nothing here knows about audio or models."""
